"""Stand-in for the get-pip.py bootstrap script that ansible-test downloads from its own file server.

That server is not reachable from hosts that only reach package registries. ansible-test accepts a
script saved in ~/.ansible/test/cache/get_pip_<version>.py instead (its error message says so);
scripts/bootstrap saves this one there. It does what get-pip.py does — put pip into the running
interpreter's environment and install the requested packages (e.g. pip==25.2) — using the pip wheel
bundled with Python (ensurepip) and the normal package index.
"""

import ensurepip
import os
import subprocess
import sys


def main() -> None:
    args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
    # ensurepip drops every PIP_* variable and points PIP_CONFIG_FILE at /dev/null for good, in this
    # process: the install below gets the environment as it was, so pip's configuration (index, CA
    # certificate of a proxy) applies to it. The pip that Python 3.12 and older bundle (23.x) has no
    # truststore: it finds a proxy's CA only through that configuration.
    env = dict(os.environ)
    ensurepip.bootstrap(upgrade=True, default_pip=True)
    if args:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *args], env=env)


if __name__ == "__main__":
    main()
