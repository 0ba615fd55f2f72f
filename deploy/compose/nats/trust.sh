#!/bin/sh
# trust.sh makes the NATS trust chain of deploy/compose/cluster.yml once,
# with nsc and nk as docs/deploy.md does by hand, in the nats-box image
# (the nats-init service runs it before any NATS node or replica starts):
#
#   - an operator with its system account (SYS), and OBSERVATORY, the
#     account observatory keeps its streams and buckets in, with JetStream;
#   - a signing key of OBSERVATORY, with which serve mints the users of the
#     workers that enroll (--nats-account-signing-key);
#   - serve's own user (--nats-creds);
#   - the nodes' resolver configuration (operator JWT, system account and
#     the accounts' JWTs preloaded), which nats.conf includes.
#
# Where it writes (the service's environment sets both):
#   TRUST_DIR    resolver.conf: public JWTs only; the NATS nodes read it.
#   SECRETS_DIR  serve.creds and nats-account-signing.nk, mode 0600, owned
#                by the image's nonroot user (65532) that observatory runs
#                as, and keys/, the directory of the replicas' shared
#                signing keys (--signing-key-file), which the first replica
#                fills on its first start.
# nsc's own keystore (the operator's and the accounts' keys) stays in the
# nsc volume, mounted in this service only.
#
# A second run finds the files and changes nothing, so `docker compose up`
# may run it every time.
set -eu

TRUST_DIR=${TRUST_DIR:?TRUST_DIR is not set}
SECRETS_DIR=${SECRETS_DIR:?SECRETS_DIR is not set}
OWNER=${OWNER:-65532:65532}

if [ -s "$TRUST_DIR/resolver.conf" ] && [ -s "$SECRETS_DIR/serve.creds" ] && [ -s "$SECRETS_DIR/nats-account-signing.nk" ]; then
	echo "trust.sh: the trust chain exists; nothing to do"
	exit 0
fi
if nsc list operators 2>/dev/null | grep -q observatory-ops; then
	echo "trust.sh: nsc has an operator but the files are incomplete: remove the stack's volumes (docker compose down -v) and start again" >&2
	exit 1
fi

umask 077
mkdir -p "$TRUST_DIR" "$SECRETS_DIR/keys"

nsc add operator --generate-signing-key --sys --name observatory-ops
nsc add account --name OBSERVATORY
nsc edit account --name OBSERVATORY \
	--js-mem-storage -1 --js-disk-storage -1 --js-streams -1 --js-consumer -1

# serve's account signing key: made here with nk, only its public half
# goes to nsc.
nk -gen account >"$SECRETS_DIR/nats-account-signing.nk"
nsc edit account --name OBSERVATORY --sk "$(nk -inkey "$SECRETS_DIR/nats-account-signing.nk" -pubout)"

# serve's own user: unrestricted within the account (it makes the
# streams, buckets and consumers, and folds FLEET).
nsc add user --account OBSERVATORY --name observatory-serve
nsc generate creds --account OBSERVATORY --name observatory-serve >"$SECRETS_DIR/serve.creds"

chown "$OWNER" "$SECRETS_DIR/serve.creds" "$SECRETS_DIR/nats-account-signing.nk" "$SECRETS_DIR/keys"
chmod 0600 "$SECRETS_DIR/serve.creds" "$SECRETS_DIR/nats-account-signing.nk"
chmod 0700 "$SECRETS_DIR/keys"

# Written last, through a temporary file: its presence says the rest is
# done.
nsc generate config --mem-resolver --sys-account SYS >"$TRUST_DIR/resolver.conf.tmp"
chmod 0644 "$TRUST_DIR/resolver.conf.tmp"
mv "$TRUST_DIR/resolver.conf.tmp" "$TRUST_DIR/resolver.conf"

echo "trust.sh: made the operator, the OBSERVATORY account, serve's user and the account signing key"
