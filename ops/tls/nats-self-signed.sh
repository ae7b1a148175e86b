#!/usr/bin/env bash
# NATS client TLS (docker-compose.tls.yml) without certificates of one's own:
# writes a private CA and a server certificate for the NATS nodes into the
# NATS TLS directory (LAPOR_NATS_TLS_DIR on the host, the first argument here).
# A directory that holds certificates already is left alone, so an operator's
# own (issued by the organisation's CA) are used as they are.
#
#   <dir>/ca/ca.pem          the CA the services trust, nothing else; next to it
#                            <hash>.0, the link OpenSSL looks it up by (SSL_CERT_DIR)
#   <dir>/server/cert.pem    the server certificate: nats, nats-2, nats-3, localhost
#   <dir>/server/key.pem     its private key, mounted into the NATS nodes only
#
# The CA's private key is thrown away once the server certificate is signed:
# to issue a new one, empty the directory and start again.
set -euo pipefail

dir=${1:?usage: nats-self-signed.sh <tls dir>}
files=("$dir/ca/ca.pem" "$dir/server/cert.pem" "$dir/server/key.pem")

# The services find the CA through SSL_CERT_DIR, a list of hashed folders
# (the image's own /etc/ssl/certs first): OpenSSL looks a CA up there by the
# hash of its name, so ca.pem needs a <hash>.0 link, remade on every start.
link_ca() {
  find "$dir/ca" -maxdepth 1 -name '*.0' -type l -delete
  ln -s ca.pem "$dir/ca/$(openssl x509 -hash -noout -in "$dir/ca/ca.pem").0"
}

present=0
for file in "${files[@]}"; do
  if [ -s "$file" ]; then present=$((present + 1)); fi
done
if [ "$present" -eq 3 ]; then
  link_ca
  echo "nats: TLS certificates present"
  exit 0
fi
if [ "$present" -ne 0 ]; then
  echo "nats: $dir holds only some of ca/ca.pem, server/cert.pem, server/key.pem; complete or empty it" >&2
  exit 1
fi

mkdir -p "$dir/ca" "$dir/server"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)

openssl req -x509 "${ec[@]}" -sha256 -days 3650 -subj "/CN=Lapor NATS CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -new "${ec[@]}" -subj "/CN=nats" -keyout "$work/key.pem" -out "$work/server.csr" \
  2>/dev/null
cat > "$work/server.ext" <<EXT
subjectAltName=DNS:nats,DNS:nats-2,DNS:nats-3,DNS:localhost,IP:127.0.0.1
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
EXT
openssl x509 -req -sha256 -days 825 -in "$work/server.csr" -CA "$work/ca.pem" \
  -CAkey "$work/ca.key" -CAcreateserial -extfile "$work/server.ext" -out "$work/cert.pem" \
  2>/dev/null
chmod 600 "$work/key.pem"
chmod 644 "$work/cert.pem" "$work/ca.pem"
mv "$work/key.pem" "$dir/server/key.pem"
mv "$work/cert.pem" "$dir/server/cert.pem"
mv "$work/ca.pem" "$dir/ca/ca.pem"
link_ca
echo "nats: generated a private CA and a server certificate (CA key discarded)"
