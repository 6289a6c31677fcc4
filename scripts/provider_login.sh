#!/bin/sh
# What a provider does for a new server, run there as root: USER logs in over SSH with the
# public key given on stdin, and a USER other than root may sudo without a password.
# Used by the demo and the pre-flight tests (scripts/demo.py) and by the test bed's hosts
# that are reached over SSH (molecule/shared/create.yml).
#   docker exec -i HOST sh -c "$(cat scripts/provider_login.sh)" sh USER < KEY.pub
set -eu
user="$1"
if [ "$user" != root ]; then
  id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
  printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$user" > /etc/sudoers.d/90-provider
  chmod 0440 /etc/sudoers.d/90-provider
  visudo -cqf /etc/sudoers.d/90-provider
fi
home=$(getent passwd "$user" | cut -d: -f6)
group=$(id -gn "$user")
install -d -m 0700 -o "$user" -g "$group" "$home/.ssh"
cat > "$home/.ssh/authorized_keys"
chown "$user:$group" "$home/.ssh/authorized_keys"
chmod 0600 "$home/.ssh/authorized_keys"
