"""Stand-in for the get-pip.py bootstrap script that ansible-test downloads from its own file server.

That server is not reachable from hosts that only reach package registries. ansible-test accepts a
script saved in ~/.ansible/test/cache/get_pip_<version>.py instead (its error message says so);
scripts/bootstrap saves this one there. It does what get-pip.py does — put pip into the running
interpreter's environment and install the requested packages (e.g. pip==25.2) — using the pip wheel
bundled with Python (ensurepip) and the normal package index.
"""

import ensurepip
import subprocess
import sys


def main() -> None:
    args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
    ensurepip.bootstrap(upgrade=True, default_pip=True)
    if args:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *args])


if __name__ == "__main__":
    main()
