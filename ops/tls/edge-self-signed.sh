#!/usr/bin/env bash
# First start of `edge` without a certificate: writes a self-signed one into
# the TLS directory (LAPOR_TLS_DIR on the host, the first argument here) so
# that nginx can start. Production replaces the two files with a real
# certificate (see README, "Deploying with Docker Compose"); this script never
# touches a directory that holds one already.
#
#   <dir>/fullchain.pem   the certificate, followed by its intermediates
#   <dir>/privkey.pem     its private key
#
# Run by the `edge-cert` service of docker-compose.yml (the mongo image, which
# carries openssl); the name in the certificate comes from LAPOR_TLS_HOSTNAME.
set -euo pipefail

dir=${1:?usage: edge-self-signed.sh <tls dir>}
name=${LAPOR_TLS_HOSTNAME:-localhost}
cert="$dir/fullchain.pem"
key="$dir/privkey.pem"

if [ -s "$cert" ] && [ -s "$key" ]; then
  echo "edge: certificate present in the TLS directory, nothing to do"
  exit 0
fi
if [ -e "$cert" ] || [ -e "$key" ]; then
  # Half a pair is an operator's mistake, not a first start: never overwrite it.
  echo "edge: only one of fullchain.pem and privkey.pem is present; add the other or remove both" >&2
  exit 1
fi

san="DNS:localhost,IP:127.0.0.1"
if [ "$name" != localhost ]; then san="DNS:$name,$san"; fi

mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# ECDSA P-256, valid 90 days: a stand-in until the real certificate is in place.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 90 \
  -subj "/CN=$name" \
  -addext "subjectAltName=$san" \
  -addext "basicConstraints=critical,CA:FALSE" \
  -addext "keyUsage=critical,digitalSignature" \
  -addext "extendedKeyUsage=serverAuth" \
  -keyout "$work/privkey.pem" -out "$work/fullchain.pem" 2>/dev/null
chmod 600 "$work/privkey.pem"
chmod 644 "$work/fullchain.pem"
# The key first: nginx is started only once both files are there.
mv "$work/privkey.pem" "$key"
mv "$work/fullchain.pem" "$cert"
echo "edge: generated a self-signed certificate for $name (replace it for production)"
