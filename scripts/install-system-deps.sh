#!/usr/bin/env bash
# Install the Debian packages Postmaster needs, only those missing, as root or through sudo.
#   scripts/install-system-deps.sh run    python3-venv (to run the app)
#   scripts/install-system-deps.sh test   + Dovecot, Chromium, ChromeDriver, nginx, PostgreSQL
set -euo pipefail

want=(python3 python3-venv)
if [ "${1:-run}" = "test" ]; then
  want+=(dovecot-imapd dovecot-pop3d chromium chromium-driver nginx postgresql openssl)
fi
if [ "${1:-run}" = "bench" ]; then
  want+=(dovecot-imapd dovecot-pop3d postgresql getmail6 fetchmail)
fi

missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# A Python that is not Debian's (pyenv, a container image) brings its own venv module.
if [[ " ${missing[*]-} " == *" python3-venv "* ]] && command -v python3 >/dev/null \
   && python3 -c 'import venv, ensurepip' 2>/dev/null; then
  missing=("${missing[@]/python3-venv}")
fi
missing=($(printf '%s\n' "${missing[@]-}" | grep -v '^$' || true))
[ ${#missing[@]} -eq 0 ] && exit 0

echo "Installing Debian packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
# Keep apt from starting system-wide daemons: the tests run their own private servers.
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
