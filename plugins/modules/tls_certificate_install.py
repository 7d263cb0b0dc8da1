#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tls_certificate_install
short_description: Install a TLS certificate, its private key and chain as one transaction, reload, and prove it is served
version_added: 0.1.0
description:
  - Checks the new certificate and key first, on the managed host, before anything is written. The
    key must belong to the certificate (their public keys are compared), the certificate must be
    valid now and for at least O(min_days_valid) more days, it must be valid for every name in
    O(hostnames) (subjectAltName, RFC 6125 wildcard rules), and with O(ca_bundle) the chain must
    build to a trusted root (C(openssl verify -purpose sslserver -CAfile <ca_bundle> -untrusted
    <chain> <certificate>)). Any problem fails the module, naming the file and the cause, and
    nothing is written.
  - Then, when something differs, it backs up the current files (O(backup)), writes the new ones
    atomically (a temporary file in the same directory, fsync, rename; the key is created with mode
    0600 before a byte is written), runs O(validate_command), reloads the service (O(service) or
    O(reload_command)) and, with O(verify_port), connects over TLS with SNI and compares the SHA-256
    fingerprint of the served leaf certificate with the new one.
  - On any failure after the first write (write error, validation, reload, the old certificate
    still served, an interrupt) the previous files are put back byte for byte with their modes and
    owners, the service is reloaded again when a reload had been attempted, the module checks that
    the previous certificate is served again and fails with the cause and that outcome.
  - The same certificate, chain and key already in place (compared by content, whatever the PEM
    layout) and served is no change. When they are in place but O(verify_port) shows another
    certificate, the module reloads the service once (a change) and verifies again.
  - Private key material never appears in a return value, a diff, a message or a log line.
options:
  certificate_src:
    description:
      - Path of the new certificate (PEM) on the managed host.
      - When the file holds more than one certificate, the first is the server certificate and the
        others are its chain (a C(fullchain.pem)); O(chain_src) and O(chain_content) must not be set then.
      - Exactly one of O(certificate_src) and O(certificate_content) is required.
    type: path
  certificate_content:
    description:
      - The new certificate as PEM text; the same rules as O(certificate_src).
    type: str
  private_key_src:
    description:
      - Path of the new private key (unencrypted PEM, PKCS#1, SEC1 or PKCS#8) on the managed host.
      - Exactly one of O(private_key_src) and O(private_key_content) is required.
    type: path
  private_key_content:
    description:
      - The new private key as PEM text. It is never logged or returned.
    type: str
  chain_src:
    description:
      - Path of the intermediate certificates (PEM, the issuer of the certificate first) on the managed host.
    type: path
  chain_content:
    description:
      - The intermediate certificates as PEM text.
    type: str
  certificate_dest:
    description:
      - Where the certificate is installed, for example C(/etc/nginx/tls/www.pem).
      - With O(fullchain=true) the certificate followed by its chain is written here.
    type: path
    required: true
  private_key_dest:
    description:
      - Where the private key is installed. It is always written with mode C(0600).
    type: path
    required: true
  chain_dest:
    description:
      - Where the chain is installed on its own (for servers that take it separately, or for
        C(ssl_trusted_certificate)). Requires a chain.
      - A chain given without O(chain_dest) and without O(fullchain=true) is refused, so that it is
        never silently dropped.
    type: path
  fullchain:
    description:
      - Write the certificate followed by its chain into O(certificate_dest) (what nginx's
        C(ssl_certificate) expects).
    type: bool
    default: false
  ca_bundle:
    description:
      - CA certificates (PEM) the chain must build to, checked with C(openssl verify). Needs the
        C(openssl) command on the managed host.
      - Without it, only the order of the chain is checked (each certificate issued by the next one).
    type: path
  hostnames:
    description:
      - Host names (or IP addresses) the certificate must be valid for. Only subjectAltName entries
        count, as for browsers; a wildcard covers exactly one leftmost label (V(*.example.com) covers
        V(www.example.com), not V(example.com) or V(a.b.example.com)).
    type: list
    elements: str
    default: []
  min_days_valid:
    description:
      - Refuse a certificate that is not valid yet, has expired, or expires within this many days.
    type: float
    default: 1
  owner:
    description:
      - Owner (name or uid) of the installed certificate, chain and key. When not set, an existing
        file keeps its owner and a new file belongs to the user the module runs as.
    type: str
  group:
    description:
      - Group (name or gid) of the installed certificate, chain and key, with the same default as O(owner).
    type: str
  mode:
    description:
      - Octal mode of the installed certificate and chain, for example V('0644'). The private key is
        always V(0600).
    type: raw
    default: '0644'
  backup:
    description:
      - Keep a copy of each current file before it is replaced. An absolute path is a directory
        (created with mode 0700), and the copies are named C(<file name>.<UTC time>) in it; anything else
        is a suffix appended to the file's path (V(.bak) gives C(www.pem.bak), replaced by the next backup).
      - Copies keep the mode and owner of the originals, so the key's copy stays 0600.
      - Without it no copy is kept on disk; the rollback does not depend on it (the module keeps the
        previous files in memory for the run).
    type: str
  validate_command:
    description:
      - Command (argv list, no shell) run after the new files are written and before the reload, for
        example V(["nginx", "-t"]). A non-zero exit code rolls back.
      - It is checked to exist before anything is written.
    type: list
    elements: str
  service:
    description:
      - systemd unit reloaded (C(systemctl reload <unit>)) after the new files are written.
      - Mutually exclusive with O(reload_command). Without either, nothing is reloaded; the served
        certificate can then only be verified if the server reads the files itself.
    type: str
  reload_command:
    description:
      - Command (argv list, no shell) that makes the server load the new files, for example
        V(["nginx", "-s", "reload"]) or V(["haproxy", ...]).
    type: list
    elements: str
  verify_host:
    description:
      - Address the module connects to for checking the served certificate.
    type: str
    default: 127.0.0.1
  verify_port:
    description:
      - TLS port of the server. When set, the module proves after the reload that the new certificate
        is served (and, when nothing changes, that the installed one is).
      - Without it the served certificate is not checked.
    type: int
  verify_sni:
    description:
      - Server name sent (SNI) when checking the served certificate. Defaults to the first entry of
        O(hostnames); with neither, no SNI is sent and the server's default certificate is checked.
    type: str
  verify_timeout:
    description:
      - Seconds allowed for one TLS connection when checking the served certificate.
    type: float
    default: 5
  verify_retries:
    description:
      - How many times the served certificate is fetched, one second apart, before the module decides
        it is not the new one (a reloaded server takes a moment to switch workers).
    type: int
    default: 5
extends_documentation_fragment:
  - runbook.stack._attributes
attributes:
  check_mode:
    support: full
    details:
      - Runs every check on the new certificate and key (including C(openssl verify) and a read of
        the served certificate) and reports what would change; nothing is written, run or reloaded.
  diff_mode:
    support: full
    details:
      - Before and after show the subject, serial, Not After, SHA-256 fingerprint and public key
        fingerprint of the certificate, and the chain fingerprints; never private key material.
  idempotent:
    support: full
    details:
      - The same certificate, chain and key in place and served is no change.
notes:
  - The module runs on the host that serves the certificate. The C(cryptography) Python library
    (a dependency of ansible-core) parses certificates and keys there.
  - O(validate_command) and O(reload_command) run without a time limit; give commands that return.
  - When the reload itself fails, the previous files are restored and the reload is tried again, so
    a server that cannot reload at all keeps running on what it had loaded before.
requirements:
  - cryptography (Python library) on the managed host.
  - openssl (command) on the managed host when O(ca_bundle) is set.
seealso:
  - module: community.crypto.x509_certificate_info
  - module: community.crypto.get_certificate
author:
  - runbook.stack maintainers (@runbook-stack)
"""

EXAMPLES = r"""
- name: Install the renewed certificate for www, reload nginx and prove it is served
  runbook.stack.tls_certificate_install:
    certificate_src: /root/renewal/www.example.com.crt
    chain_src: /root/renewal/intermediate.crt
    private_key_src: /root/renewal/www.example.com.key
    certificate_dest: /etc/nginx/tls/www.example.com.fullchain.pem
    private_key_dest: /etc/nginx/tls/www.example.com.key
    fullchain: true
    ca_bundle: /etc/ssl/certs/ca-certificates.crt
    hostnames: [www.example.com, example.com]
    min_days_valid: 30
    backup: /var/backups/tls
    validate_command: [nginx, -t]
    service: nginx
    verify_port: 443
  register: www_cert

- name: Install a certificate from the vault (key content is never logged)
  runbook.stack.tls_certificate_install:
    certificate_content: "{{ vault_api_certificate }}"
    chain_content: "{{ vault_api_chain }}"
    private_key_content: "{{ vault_api_private_key }}"
    certificate_dest: /etc/haproxy/tls/api.crt
    chain_dest: /etc/haproxy/tls/api.chain.crt
    private_key_dest: /etc/haproxy/tls/api.key
    group: haproxy
    hostnames: [api.example.com]
    backup: .bak
    validate_command: [haproxy, -c, -f, /etc/haproxy/haproxy.cfg]
    reload_command: [systemctl, reload, haproxy]
    verify_port: 8443
    verify_sni: api.example.com
    verify_retries: 10

- name: Dry run before the change window (checks the pair, writes nothing)
  runbook.stack.tls_certificate_install:
    certificate_src: /root/renewal/www.example.com.fullchain.pem
    private_key_src: /root/renewal/www.example.com.key
    certificate_dest: /etc/nginx/tls/www.example.com.fullchain.pem
    private_key_dest: /etc/nginx/tls/www.example.com.key
    fullchain: true
    hostnames: [www.example.com]
    verify_port: 443
  check_mode: true
  diff: true
"""

RETURN = r"""
old:
  description: The certificate in O(certificate_dest) before the run; null when there was none or it could not be parsed.
  type: dict
  returned: always
  contains:
    subject:
      description: Subject (RFC 4514).
      type: str
      sample: CN=www.example.com
    issuer:
      description: Issuer (RFC 4514).
      type: str
      sample: CN=Example Issuing CA 1,O=Example
    serial:
      description: Serial number, upper-case hex as C(openssl x509 -serial) prints it.
      type: str
      sample: 3A9F0C12
    fingerprint_sha256:
      description: SHA-256 fingerprint of the DER certificate, C(AB:CD:...).
      type: str
      sample: "5E:0B:...:91"
    not_before:
      description: Start of the validity period (UTC).
      type: str
      sample: "2026-01-01T00:00:00Z"
    not_after:
      description: End of the validity period (UTC).
      type: str
      sample: "2026-04-01T00:00:00Z"
    hostnames:
      description: subjectAltName DNS names and IP addresses.
      type: list
      elements: str
      sample: [www.example.com, example.com]
    public_key_sha256:
      description: SHA-256 fingerprint of the public key (SubjectPublicKeyInfo); identifies the key pair without revealing it.
      type: str
      sample: "0C:77:...:1A"
new:
  description: The new certificate, with the same keys as RV(old).
  type: dict
  returned: when the new certificate could be parsed
  sample: {"subject": "CN=www.example.com", "serial": "4B01", "not_after": "2026-07-01T00:00:00Z"}
chain:
  description: Fingerprints (SHA-256) of the new chain certificates, issuer of the certificate first.
  type: list
  elements: str
  returned: when the new certificate could be parsed
  sample: ["A1:B2:...:FF"]
served:
  description:
    - The certificate O(verify_host):O(verify_port) served at the end (before the run in check mode); null without O(verify_port).
    - After a failure it is what was served after the rollback.
  type: dict
  returned: always
  contains:
    fingerprint_sha256:
      description: SHA-256 fingerprint of the served leaf certificate.
      type: str
    serial:
      description: Its serial number.
      type: str
    subject:
      description: Its subject.
      type: str
    not_after:
      description: Its Not After (UTC).
      type: str
    matches:
      description: Whether it is the new certificate.
      type: bool
    attempts:
      description: How many connections were made.
      type: int
    error:
      description: Why the certificate could not be fetched (check mode only; otherwise that is a failure).
      type: str
files_changed:
  description: Destination files whose content was (or in check mode would be) replaced.
  type: list
  elements: str
  returned: always
  sample: [/etc/nginx/tls/www.example.com.fullchain.pem, /etc/nginx/tls/www.example.com.key]
attributes_changed:
  description: Destination files whose content stays but whose mode or owner was (or would be) fixed.
  type: list
  elements: str
  returned: always
  sample: []
backup:
  description: Backup copy of each replaced file, keyed C(certificate), C(private_key), C(chain); empty without O(backup).
  type: dict
  returned: always
  sample: {"certificate": "/var/backups/tls/www.example.com.fullchain.pem.20260301T020000Z"}
reloaded:
  description: Whether the service was reloaded (or in check mode would be).
  type: bool
  returned: always
  sample: true
rolled_back:
  description: Whether the previous files were put back after a failure (only on failure).
  type: bool
  returned: on failure after writing
  sample: true
commands:
  description: Commands that ran (validation, reload, openssl verify), as argv lists.
  type: list
  elements: list
  returned: always
  sample: [[openssl, verify, -purpose, sslserver, -CAfile, /etc/ssl/certs/ca-certificates.crt, /tmp/leaf.pem], [nginx, -t]]
duration_s:
  description: Seconds the module spent.
  type: float
  returned: always
  sample: 1.27
"""

import datetime as _dt
import os
import shutil
import time
from dataclasses import dataclass
from typing import Any, Callable

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils import _tls as tls
from ansible_collections.runbook.stack.plugins.module_utils._common.process import Interrupted, terminate_on_signals
from ansible_collections.runbook.stack.plugins.module_utils._common.text import one_line


@dataclass
class Target:
    """One destination file: what it should hold and how it is now."""

    role: str  # certificate, private_key, chain (the key of the backup return value)
    option: str  # the option naming the file, for messages
    path: str
    data: bytes
    certs: list[Any] | None  # the certificates it should hold; None for the key
    mode: int
    state: tls.FileState | None = None
    same: bool = False


@dataclass
class NewMaterial:
    leaf: Any
    chain: list[Any]
    key: Any
    key_data: bytes
    where: dict[str, str]


def argument_spec() -> dict[str, Any]:
    return dict(
        certificate_src=dict(type="path"),
        certificate_content=dict(type="str"),
        private_key_src=dict(type="path", no_log=False),
        private_key_content=dict(type="str", no_log=True),
        chain_src=dict(type="path"),
        chain_content=dict(type="str"),
        certificate_dest=dict(type="path", required=True),
        private_key_dest=dict(type="path", required=True, no_log=False),
        chain_dest=dict(type="path"),
        fullchain=dict(type="bool", default=False),
        ca_bundle=dict(type="path"),
        hostnames=dict(type="list", elements="str", default=[]),
        min_days_valid=dict(type="float", default=1),
        owner=dict(type="str"),
        group=dict(type="str"),
        mode=dict(type="raw", default="0644"),
        backup=dict(type="str"),
        validate_command=dict(type="list", elements="str"),
        service=dict(type="str"),
        reload_command=dict(type="list", elements="str"),
        verify_host=dict(type="str", default="127.0.0.1"),
        verify_port=dict(type="int"),
        verify_sni=dict(type="str"),
        verify_timeout=dict(type="float", default=5),
        verify_retries=dict(type="int", default=5),
    )


def load_new(params: dict[str, Any]) -> NewMaterial:
    """The new certificate, chain and key; TlsError naming the source that is wrong."""
    if params["certificate_src"]:
        cert_where = f"certificate_src {params['certificate_src']}"
        cert_data = tls.read_file(params["certificate_src"], "certificate_src")
    else:
        cert_where = "certificate_content"
        cert_data = params["certificate_content"].encode()
    if params["private_key_src"]:
        key_where = f"private_key_src {params['private_key_src']}"
        key_data = tls.read_file(params["private_key_src"], "private_key_src")
    else:
        key_where = "private_key_content"
        key_data = params["private_key_content"].encode()
    certs = tls.load_certificates(cert_data, cert_where)
    leaf, chain = certs[0], certs[1:]
    chain_where = f"the chain in {cert_where}" if chain else ""
    if params["chain_src"] or params["chain_content"]:
        if chain:
            raise tls.TlsError(
                f"{cert_where} already holds a chain ({len(chain)} more certificates): drop chain_src/chain_content"
            )
        if params["chain_src"]:
            chain_where = f"chain_src {params['chain_src']}"
            chain_data = tls.read_file(params["chain_src"], "chain_src")
        else:
            chain_where = "chain_content"
            chain_data = params["chain_content"].encode()
        chain = tls.load_certificates(chain_data, chain_where)
    key = tls.load_private_key(key_data, key_where)
    if not key_data.endswith(b"\n"):
        key_data += b"\n"
    return NewMaterial(leaf, chain, key, key_data, {"certificate": cert_where, "key": key_where, "chain": chain_where})


def check_new(new: NewMaterial, params: dict[str, Any]) -> None:
    """Every check on the new pair that needs no command (key match, dates, names, chain placement)."""
    where = new.where
    if not tls.key_matches(new.leaf, new.key):
        raise tls.TlsError(f"{where['key']} does not belong to {where['certificate']}: their public keys differ")
    tls.check_validity(new.leaf, params["min_days_valid"], where["certificate"])
    missing = tls.missing_hostnames(new.leaf, params["hostnames"])
    if missing:
        names = ", ".join(tls.describe_cert(new.leaf)["hostnames"]) or "none, it has no subjectAltName"
        raise tls.TlsError(f"{where['certificate']} is not valid for {', '.join(missing)} (its names: {names})")
    if new.chain and not (params["fullchain"] or params["chain_dest"]):
        raise tls.TlsError(f"{where['chain']} has nowhere to go: set chain_dest or fullchain=true")
    if params["chain_dest"] and not new.chain:
        raise tls.TlsError("chain_dest is set but no chain was given (chain_src, chain_content or a fullchain file)")
    if new.chain and not params["ca_bundle"]:
        problem = tls.chain_problem(new.leaf, new.chain)
        if problem:
            raise tls.TlsError(f"{where['chain']}: {problem}")


def command_problem(argv: list[str] | None, option: str) -> str | None:
    """Why a command option cannot run (empty, or its program is not found), or None."""
    if argv is None:
        return None
    if not argv or not argv[0]:
        return f"{option} is empty"
    if shutil.which(argv[0]) is None:
        return f"{option}: program {argv[0]!r} not found"
    return None


def plan_targets(new: NewMaterial, params: dict[str, Any], mode: int) -> list[Target]:
    """The destination files, their wanted content and their current state."""
    cert_certs = [new.leaf, *new.chain] if params["fullchain"] else [new.leaf]
    targets = [
        Target(
            "certificate", "certificate_dest", params["certificate_dest"], tls.cert_pem(cert_certs), cert_certs, mode
        ),
        Target("private_key", "private_key_dest", params["private_key_dest"], new.key_data, None, tls.KEY_MODE),
    ]
    if params["chain_dest"]:
        targets.append(Target("chain", "chain_dest", params["chain_dest"], tls.cert_pem(new.chain), new.chain, mode))
    paths = [os.path.abspath(t.path) for t in targets]
    if len(set(paths)) != len(paths):
        raise tls.TlsError("certificate_dest, private_key_dest and chain_dest must be different files")
    for target in targets:
        tls.check_writable_dir(target.path, target.option)
        target.state = tls.snapshot(target.path, target.option)
        if target.certs is None:
            target.same = tls.same_private_key(target.state.data, new.key)
        else:
            target.same = tls.same_certificates(target.state.data, target.certs)
    return targets


def needs_attributes(target: Target, uid: int | None, gid: int | None) -> bool:
    state = target.state
    return state.mode != target.mode or (uid is not None and state.uid != uid) or (gid is not None and state.gid != gid)


def describe_file(state: tls.FileState) -> dict[str, Any] | None:
    """Public facts of the first certificate of a snapshot, None when there is none."""
    if state.data is None:
        return None
    try:
        return tls.describe_cert(tls.load_certificates(state.data, state.path)[0])
    except tls.TlsError:
        return None


def diff_view(cert: dict[str, Any] | None, chain: list[str] | None) -> dict[str, Any]:
    if cert is None:
        return {"certificate": None}
    keys = ("subject", "serial", "not_after", "fingerprint_sha256", "public_key_sha256", "hostnames")
    return {"certificate": {k: cert[k] for k in keys}, "chain": chain}


def rollback(
    written: list[Target],
    reload_argv: list[str] | None,
    run: Callable[[list[str], str], None],
    check_served: Callable[[str], dict[str, Any]] | None,
    old: dict[str, Any] | None,
) -> tuple[str, dict[str, Any] | None]:
    """Put the previous files back, reload when a reload had been attempted, check what is served.

    Returns the sentence for the failure message and the served facts (None when not checked)."""
    problems = []
    for target in reversed(written):
        try:
            tls.restore(target.state)
        except OSError as exc:
            problems.append(f"cannot restore {target.option} {target.path}: {exc.strerror or exc}")
    if problems:
        return "ROLLBACK INCOMPLETE: " + "; ".join(problems), None
    text = "the previous files are back in place"
    if reload_argv:
        try:
            run(reload_argv, "reload")
            text += " and the service was reloaded with them"
        except tls.TlsError as exc:
            return f"{text}, but reloading the service with them failed: {exc}", None
    else:
        text += " (the service had not been reloaded)"
    if check_served is None or old is None:
        return text + ".", None
    try:
        facts = check_served(old["fingerprint_sha256"])
    except tls.TlsError as exc:
        return f"{text}, but the served certificate could not be checked: {exc}", None
    if facts["matches"]:
        return f"{text}; the previous certificate (serial {old['serial']}) is served again.", facts
    return (
        f"{text}, but the server still serves serial {facts['serial']} "
        f"(SHA-256 {facts['fingerprint_sha256']}), not the previous certificate (serial {old['serial']}).",
        facts,
    )


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[
            ("certificate_src", "certificate_content"),
            ("private_key_src", "private_key_content"),
            ("chain_src", "chain_content"),
            ("service", "reload_command"),
        ],
        required_one_of=[("certificate_src", "certificate_content"), ("private_key_src", "private_key_content")],
        supports_check_mode=True,
    )
    if not tls.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=tls.CRYPTOGRAPHY_IMPORT_ERROR)

    params = module.params
    started = time.monotonic()
    commands: list[list[str]] = []
    result: dict[str, Any] = dict(
        changed=False,
        old=None,
        served=None,
        files_changed=[],
        attributes_changed=[],
        backup={},
        reloaded=False,
        commands=commands,
    )

    def finish(msg: str | None = None, **extra: Any) -> None:
        result.update(extra, duration_s=round(time.monotonic() - started, 3))
        if msg is None:
            module.exit_json(**result)
        module.fail_json(msg=msg, **result)

    def run(argv: list[str], what: str) -> None:
        """Run a command; TlsError with its exit code and the tail of its output when it fails."""
        commands.append(list(argv))
        try:
            rc, out, err = module.run_command(argv, handle_exceptions=False)
        except OSError as exc:
            raise tls.TlsError(f"{what} {' '.join(argv)} could not run: {exc.strerror or exc}") from None
        if rc != 0:
            tail = one_line((err.strip() or out.strip())[-500:]) or "no output"
            raise tls.TlsError(f"{what} {' '.join(argv)} failed (rc={rc}): {tail}")

    sni = params["verify_sni"] or (params["hostnames"][0] if params["hostnames"] else None)
    verify_port = params["verify_port"]
    where_served = f"{params['verify_host']}:{verify_port}"

    def check_served(want: str, retries: int | None = None) -> dict[str, Any]:
        return tls.wait_served(
            params["verify_host"],
            verify_port,
            sni,
            want,
            params["verify_timeout"],
            retries or params["verify_retries"],
        )

    # ---------------------------------------------------------------- 1. check the new material
    targets: list[Target] = []
    to_write: list[Target] = []
    to_fix: list[Target] = []
    need_reload = False
    reload_argv: list[str] | None = None
    uid = gid = None
    new_facts: dict[str, Any] = {}
    chain_fps: list[str] = []
    try:
        if verify_port is not None and not 0 < verify_port < 65536:
            raise tls.TlsError(f"verify_port {verify_port} is not a valid TCP port")
        if params["verify_retries"] < 1 or params["verify_timeout"] <= 0:
            raise tls.TlsError("verify_retries must be 1 or more and verify_timeout a positive number of seconds")
        mode = tls.parse_mode(params["mode"])
        uid, gid = tls.resolve_owner(params["owner"], params["group"])
        for option in ("validate_command", "reload_command"):
            problem = command_problem(params[option], option)
            if problem:
                raise tls.TlsError(problem)
        reload_argv = params["reload_command"]
        if params["service"]:
            systemctl = module.get_bin_path("systemctl")
            if not systemctl:
                raise tls.TlsError(f"service {params['service']!r} is set but systemctl is not found")
            reload_argv = [systemctl, "reload", params["service"]]

        new = load_new(params)
        new_facts = tls.describe_cert(new.leaf)
        chain_fps = [tls.fingerprint(tls.cert_der(c)) for c in new.chain]
        result.update(new=new_facts, chain=chain_fps)
        check_new(new, params)
        if params["ca_bundle"]:
            openssl = module.get_bin_path("openssl")
            if not openssl:
                raise tls.TlsError("ca_bundle is set but the openssl command is not found")
            tls.read_file(params["ca_bundle"], "ca_bundle")

            def run_openssl(argv: list[str]) -> tuple[int, str, str]:
                commands.append(list(argv))
                return module.run_command(argv)

            problem = tls.verify_chain(run_openssl, openssl, params["ca_bundle"], new.leaf, new.chain)
            if problem:
                raise tls.TlsError(
                    f"the chain of {new.where['certificate']} does not build to ca_bundle {params['ca_bundle']}: {problem}"
                )

        # ------------------------------------------------------------ 2. compare with what is there
        targets = plan_targets(new, params, mode)
        result["old"] = describe_file(targets[0].state)
        to_write = [t for t in targets if not t.same]
        to_fix = [t for t in targets if t.same and needs_attributes(t, uid, gid)]
        result["files_changed"] = [t.path for t in to_write]
        result["attributes_changed"] = [t.path for t in to_fix]
        need_reload = bool(to_write and reload_argv)
        if verify_port is not None:
            # a read, so check mode does it too; when the files stay, what is served decides
            try:
                result["served"] = check_served(new_facts["fingerprint_sha256"], 1)
            except tls.TlsError as exc:
                result["served"] = {"matches": False, "error": str(exc)}
            if not to_write and not result["served"]["matches"]:
                if not reload_argv:
                    seen = result["served"].get("error") or f"serial {result['served']['serial']}"
                    raise tls.TlsError(
                        f"the certificate is installed, but {where_served} serves another one ({seen}) and neither "
                        "service nor reload_command is set to load it"
                    )
                need_reload = True
    except tls.TlsError as exc:
        finish(f"refused to install the certificate, nothing was written: {exc}")

    changed = bool(to_write or to_fix or need_reload)
    result.update(changed=changed, reloaded=need_reload)
    if module._diff:
        result["diff"] = dict(
            before=diff_view(result["old"], describe_chain(targets)),
            after=diff_view(new_facts, chain_fps),
        )
    if module.check_mode or not changed:
        finish()

    # ---------------------------------------------------------------- 3. the transaction
    written: list[Target] = []
    reload_attempted = False
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    try:
        with terminate_on_signals():
            if params["backup"]:
                for target in to_write:
                    path = tls.write_backup(target.state, params["backup"], stamp, target.option)
                    if path:
                        result["backup"][target.role] = path
            # the key first: the certificate never sits next to a key that is not its own
            for target in sorted(to_write, key=lambda t: t.certs is not None):
                written.append(target)
                tls.write_file(
                    target.path,
                    target.data,
                    target.mode,
                    uid if uid is not None else target.state.uid,
                    gid if gid is not None else target.state.gid,
                    target.option,
                )
            for target in to_fix:
                try:
                    os.chown(target.path, -1 if uid is None else uid, -1 if gid is None else gid)
                    os.chmod(target.path, target.mode)
                except OSError as exc:
                    raise tls.TlsError(f"cannot set the mode/owner of {target.option} {target.path}: {exc}") from None
            if (to_write or need_reload) and params["validate_command"]:
                run(params["validate_command"], "validate_command")
            if need_reload:
                reload_attempted = True
                run(reload_argv, "reload")
            if verify_port is not None:
                result["served"] = check_served(new_facts["fingerprint_sha256"])
                if not result["served"]["matches"]:
                    raise tls.TlsError(
                        f"{'after the reload ' if need_reload else ''}{where_served} still serves serial {result['served']['serial']} "
                        f"(SHA-256 {result['served']['fingerprint_sha256']}) after {result['served']['attempts']} "
                        f"attempts, not the new certificate (serial {new_facts['serial']})"
                    )
    except (tls.TlsError, Interrupted) as exc:
        if not written:
            finish(f"cannot install the certificate ({exc}); no file was replaced")
        outcome, after = rollback(
            written,
            reload_argv if reload_attempted else None,
            run,
            check_served if verify_port is not None else None,
            result["old"],
        )
        if after is not None:
            result["served"] = after
        finish(f"cannot install the certificate: {exc}. Rolled back: {outcome}", rolled_back=True)
    finish()


def describe_chain(targets: list[Target]) -> list[str] | None:
    """Fingerprints of the chain currently in place (chain_dest, else the fullchain's tail)."""
    source = targets[2].state if len(targets) > 2 else targets[0].state
    if source is None or source.data is None:
        return None
    try:
        certs = tls.load_certificates(source.data, source.path)
    except tls.TlsError:
        return None
    if len(targets) <= 2:
        certs = certs[1:]
    return [tls.fingerprint(tls.cert_der(c)) for c in certs]


if __name__ == "__main__":
    main()
