#!/usr/bin/env bash
# Make a private CA and one key/certificate pair per role (scheduler, worker, client) for Dask TLS.
# Usage: cluster/make-certs.sh OUT_DIR [SCHEDULER_HOSTNAME]
# Every connection is mutually authenticated: a peer needs a certificate signed by this CA.
# Each certificate names its role in its subject (O=lid-dask, OU=ROLE), which the lid_dask.security
# preload checks on every connection, and may be used only as that role needs (extendedKeyUsage):
#   scheduler  serverAuth + clientAuth  it listens, and connects to workers and nannies
#   worker     serverAuth + clientAuth  its nanny and worker listen, and it connects to the scheduler
#   client     clientAuth               it connects; it can never serve as a scheduler or worker
# Only the scheduler's certificate names hosts (subjectAltName). Keep ca.key offline: whoever
# holds it can make a certificate for any role.
set -euo pipefail
out=${1:?usage: make-certs.sh OUT_DIR [SCHEDULER_HOSTNAME]}
host=${2:-localhost}
umask 077
mkdir -p "$out"
cd "$out"
key=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${key[@]}" -days 825 -subj "/O=lid-dask/CN=lid-dask CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout ca.key -out ca.pem 2>/dev/null
sign() {  # ROLE EXTENDED_KEY_USAGE [EXTRA_EXTENSION]
  openssl req "${key[@]}" -subj "/O=lid-dask/OU=$1/CN=lid-dask-$1" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\n%s\n" \
    "$2" "${3:-}" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm "$1.csr" "$1.ext"
}
sign scheduler serverAuth,clientAuth "subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1"
sign worker serverAuth,clientAuth
sign client clientAuth
chmod 644 ca.pem scheduler.pem worker.pem client.pem
echo "wrote ca.pem and {scheduler,worker,client}.{pem,key} to $out (keep ca.key offline)" >&2
