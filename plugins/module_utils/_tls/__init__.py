# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The TLS helpers of tls_certificate_install (private), one module per concern:

- ``certs``: parsing PEM certificates and keys, the key match, and the facts of a certificate;
- ``verify``: validity window, host names, the chain, ``openssl verify``, the served certificate;
- ``files``: owners and modes, snapshots, atomic writes and backups of the files it replaces.

This ``__init__`` is a one-release re-export shim: ``from ...module_utils import _tls`` keeps working
for every name the single ``_tls.py`` module had. New code imports from the submodule that defines
the name; the shim goes in the next release.
"""

from __future__ import annotations

from ansible_collections.runbook.stack.plugins.module_utils._common.files import atomic_write  # noqa: F401
from ansible_collections.runbook.stack.plugins.module_utils._tls.certs import (  # noqa: F401
    _PEM_CERT_RE,
    CRYPTOGRAPHY_IMPORT_ERROR,
    HAS_CRYPTOGRAPHY,
    KEY_MODE,
    TlsError,
    cert_der,
    cert_pem,
    common_name,
    describe_cert,
    fingerprint,
    hex_serial,
    iso,
    key_matches,
    load_certificates,
    load_private_key,
    not_after,
    not_before,
    private_key_der,
    public_key_der,
    read_file,
    same_certificates,
    same_private_key,
    san_names,
    serial_hex,
)
from ansible_collections.runbook.stack.plugins.module_utils._tls.files import (  # noqa: F401
    FileState,
    backup_path,
    check_writable_dir,
    parse_mode,
    resolve_owner,
    restore,
    snapshot,
    write_backup,
    write_file,
)
from ansible_collections.runbook.stack.plugins.module_utils._tls.verify import (  # noqa: F401
    _ip,
    _normalize_host,
    chain_problem,
    check_validity,
    fetch_served_cert,
    host_covered,
    hostname_matches,
    missing_hostnames,
    openssl_verify_argv,
    openssl_verify_problem,
    served_facts,
    verify_chain,
    wait_served,
)
