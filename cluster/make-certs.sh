#!/usr/bin/env bash
# Make a private CA and one key/certificate pair per role (scheduler, worker, client) for Dask TLS.
# Usage: cluster/make-certs.sh OUT_DIR [SCHEDULER_HOSTNAME]
# Every connection is mutually authenticated: a peer needs a certificate signed by this CA.
set -euo pipefail
out=${1:?usage: make-certs.sh OUT_DIR [SCHEDULER_HOSTNAME]}
host=${2:-localhost}
mkdir -p "$out"
cd "$out"
openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=lid-dask CA" \
  -keyout ca.key -out ca.pem 2>/dev/null
for role in scheduler worker client; do
  openssl req -newkey rsa:3072 -nodes -subj "/CN=lid-dask-$role" -keyout "$role.key" -out "$role.csr" 2>/dev/null
  printf "subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n" "$host" > "$role.ext"
  openssl x509 -req -in "$role.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
    -extfile "$role.ext" -out "$role.pem" 2>/dev/null
  rm "$role.csr" "$role.ext"
done
chmod 600 ./*.key
echo "wrote ca.pem and {scheduler,worker,client}.{pem,key} to $out" >&2
