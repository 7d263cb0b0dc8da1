# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options of the s3_* modules; kept in step with _s3.s3_argument_spec()."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  endpoint_url:
    description:
      - URL of the S3 API, for example V(https://minio.internal.example.com:9000).
      - Must use the V(http) or V(https) scheme and name a host.
      - When not set, AWS S3 of O(region) is used.
      - Falls back to E(AWS_ENDPOINT_URL_S3), then E(AWS_ENDPOINT_URL).
    type: str
  access_key:
    description:
      - Access key ID. Falls back to E(AWS_ACCESS_KEY_ID).
      - Must be set together with O(secret_key).
    type: str
    aliases: [aws_access_key_id]
  secret_key:
    description:
      - Secret access key. Falls back to E(AWS_SECRET_ACCESS_KEY). Never returned or logged.
    type: str
  session_token:
    description:
      - Session token of temporary credentials. Falls back to E(AWS_SESSION_TOKEN), then E(AWS_SECURITY_TOKEN)
        (what the AWX Amazon Web Services credential injects). Never returned or logged.
    type: str
  region:
    description:
      - Region the requests are signed for. Falls back to E(AWS_REGION), then E(AWS_DEFAULT_REGION).
    type: str
    default: us-east-1
  validate_certs:
    description:
      - Verify the server's TLS certificate on V(https) endpoints.
    type: bool
    default: true
  ca_bundle:
    description:
      - CA certificate bundle used to verify the server when O(validate_certs=true).
        Falls back to E(AWS_CA_BUNDLE).
    type: path
  addressing_style:
    description:
      - How the bucket is put in the URL. V(path) (C(https://host/bucket/key)) works with MinIO,
        SeaweedFS, Ceph and most self-hosted servers; V(virtual) puts it in the host name.
    type: str
    default: path
    choices: [auto, path, virtual]
  connect_timeout:
    description:
      - Seconds to wait for a TCP connection to the endpoint. A failed request is retried at most twice.
    type: float
    default: 5
  read_timeout:
    description:
      - Seconds to wait for the server to answer a request.
    type: float
    default: 30
requirements:
  - boto3 and botocore (Python libraries) on the host that runs the module.
notes:
  - All options of this fragment can be set once for a play with
    C(module_defaults) and the action group C(group/runbook.stack.s3).
"""
