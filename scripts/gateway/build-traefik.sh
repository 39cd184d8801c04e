#!/usr/bin/env bash
# Provides a static Traefik binary (the local cluster's Gateway API implementation) and prints
# its path as the last line. Cached by version outside the repository; $CTF_TRAEFIK_BIN wins.
#
# Built from the Go module proxy in a throwaway module that requires traefik and copies its
# replace directives and go.sum. The proxy refuses a few modules traefik needs, so three local
# stand-ins are written next to it:
#   - github.com/traefik/traefik/dynamic/ext: a nested module the traefik zip leaves out;
#   - github.com/containous/go-http-auth (traefik's fork): abbot/go-http-auth v0.4.0 plus the two
#     functions the fork adds (only the basic/digest auth middlewares use them);
#   - github.com/go-acme/lego/v5: a copy without the DNS providers whose SDKs are not served
#     (only ACME DNS-01 with those vendors is lost).
set -euo pipefail

TRAEFIK_VERSION="${CTF_TRAEFIK_VERSION:-v3.7.13}"
CACHE_ROOT="${CTF_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/challenge-engine}"
DIR="$CACHE_ROOT/traefik-$TRAEFIK_VERSION"
OUT="$DIR/bin/traefik"
log() { printf '[traefik %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ -n "${CTF_TRAEFIK_BIN:-}" && -x "${CTF_TRAEFIK_BIN}" ]]; then
  echo "$CTF_TRAEFIK_BIN"; exit 0
fi
if [[ -x "$OUT" ]]; then echo "$OUT"; exit 0; fi

# lego v5 DNS providers whose SDK modules the proxy refuses (403 on the .mod or the zip).
LEGO_DROP=(${CTF_LEGO_DROP_PROVIDERS:-alidns aliesa azion dnsimple edgedns edgeone huaweicloud oraclecloud
  regfish sakuracloud tencentcloud ucloud yandexcloud})

modinfo() { go mod download -json "$1" | sed -n "s/.*\"$2\": \"\(.*\)\",*/\1/p"; }

start=$(date +%s)
work="$DIR/module"
rm -rf "$work"
mkdir -p "$work" "$DIR/bin"
log "building traefik $TRAEFIK_VERSION from the Go module proxy (cold: ~6 min on 2 idle cores, more beside other builds)"
cd "$work"
go mod init ctf.local/traefikbuild >/dev/null 2>&1
src=$(modinfo "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" Dir)
[[ -f "$src/go.mod" ]] || { log "cannot read traefik $TRAEFIK_VERSION from the module proxy"; exit 1; }

# Stand-in 1: the dynamic config extension is empty types upstream.
mkdir -p ext
printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24\n' > ext/go.mod
cat > ext/ext.go <<'EOF'
// Package ext stands in for traefik's nested dynamic/ext module, which its zip omits.
package ext

type HTTP struct{}

type Router struct{}
EOF

# Stand-in 2: the go-http-auth fork's additions on top of the served upstream release.
auth_src=$(modinfo github.com/abbot/go-http-auth@v0.4.0 Dir)
mkdir -p go-http-auth
cp "$auth_src"/*.go go-http-auth/
rm -f go-http-auth/*_test.go
chmod -R u+w go-http-auth
cat > go-http-auth/go.mod <<'EOF'
module github.com/abbot/go-http-auth

go 1.24

require (
	golang.org/x/crypto v0.45.0
	golang.org/x/net v0.47.0
)
EOF
cat > go-http-auth/stand_in.go <<'EOF'
package auth

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// CheckSecret reports whether password matches an htpasswd secret (MD5, SHA or bcrypt).
func CheckSecret(password, secret string) bool {
	compare := compareFuncs[0].compare
	for _, cmp := range compareFuncs[1:] {
		if strings.HasPrefix(secret, cmp.prefix) {
			compare = cmp.compare
			break
		}
	}
	return compare([]byte(secret), []byte(password)) == nil
}

// RequireAuthStale asks the client to retry with a fresh nonce (RFC 7616 stale=true).
func (a *DigestAuth) RequireAuthStale(w http.ResponseWriter, r *http.Request) {
	a.mutex.Lock()
	nonce := RandomKey()
	a.clients[nonce] = &digest_client{nc: 0, last_seen: time.Now().UnixNano()}
	a.mutex.Unlock()
	w.Header().Set(contentType, a.Headers.V().UnauthContentType)
	w.Header().Set(a.Headers.V().Authenticate,
		fmt.Sprintf(`Digest realm="%s", nonce="%s", opaque="%s", algorithm="MD5", qop="auth", stale=true`,
			a.Realm, nonce, a.Opaque))
	w.WriteHeader(a.Headers.V().UnauthCode)
	_, _ = w.Write([]byte(a.Headers.V().UnauthResponse))
}
EOF

# Stand-in 3: lego v5 without the unavailable DNS providers.
lego_version=$(sed -n 's#^[[:space:]]*github.com/go-acme/lego/v5 \(v[^ ]*\).*#\1#p' "$src/go.mod" | head -1)
lego_src=$(modinfo "github.com/go-acme/lego/v5@$lego_version" Dir)
cp -r "$lego_src" lego
chmod -R u+w lego
gen=lego/providers/dns/zz_gen_dns_providers.go
for p in "${LEGO_DROP[@]}"; do
  rm -rf "lego/providers/dns/$p"
  # drop the import and the `case "<name>"...: return <p>.NewDNSProvider()` pair
  awk -v p="$p" '
    $0 ~ "\"github.com/go-acme/lego/v5/providers/dns/" p "\"$" { next }
    /^\tcase / { held = $0; next }
    held != "" { if ($0 ~ "^\t\treturn " p "\\.") { held = ""; next } print held; held = "" }
    { print }
  ' "$gen" > "$gen.new" && mv "$gen.new" "$gen"
done
rm -rf lego/e2e lego/cmd lego/internal/releaser lego/docs
log "lego $lego_version without ${#LEGO_DROP[@]} DNS providers: ${LEGO_DROP[*]}"

gover=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$src/go.mod")
go mod edit -go="$gover" -require="github.com/traefik/traefik/v3@$TRAEFIK_VERSION"
# traefik's own replace directives, except the local path it uses for dynamic/ext
while read -r from to; do
  go mod edit -replace="$from=$to"
done < <(awk '
  /^replace \(/ { inblock = 1; next }
  inblock && /^\)/ { inblock = 0; next }
  inblock && /=>/ { print $1, $3 "@" $4 }
  /^replace [^(]/ && $4 !~ /^\./ { print $2, $4 "@" $5 }
' "$src/go.mod")
while read -r mod; do go mod edit -exclude="$mod"; done < <(sed -n 's/^exclude \(.*\) \(v.*\)$/\1@\2/p' "$src/go.mod")
go mod edit \
  -replace=github.com/traefik/traefik/dynamic/ext=./ext \
  -replace=github.com/abbot/go-http-auth=./go-http-auth \
  -replace="github.com/go-acme/lego/v5=./lego"
cp "$src/go.sum" go.sum
chmod u+w go.sum

ldflags="-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION"
ldflags+=" -X github.com/traefik/traefik/v3/pkg/version.BuildDate=1970-01-01T00:00:00Z"
CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$OUT.part" \
  github.com/traefik/traefik/v3/cmd/traefik
mv "$OUT.part" "$OUT"
log "traefik ready ($(( $(date +%s) - start ))s): $(file -b "$OUT" | grep -o '[a-z]* linked' | head -1), $(du -m "$OUT" | cut -f1) MB"
echo "$OUT"
