#!/usr/bin/env bash
# OpenSSH server for tests/targets/test_remote_ssh.py (issue 5): the tests start their own sshd on 127.0.0.1
# with a throwaway config and keys; this only installs the binary. Idempotent: skips when present.
#
#   bash .ci/setup-sshd.sh
set -euo pipefail
if [ -x /usr/sbin/sshd ] && command -v ssh >/dev/null && command -v scp >/dev/null; then
  echo "setup-sshd: $(ssh -V 2>&1) and /usr/sbin/sshd present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends openssh-server openssh-client openssh-sftp-server >/dev/null
echo "setup-sshd: installed $(ssh -V 2>&1)"
