package jwtauthn

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/structpb"
)

// Status is google/jwt_verify_lib's verification status; its String is
// the library's message, which Envoy sends as the 401/403 body.
type Status int

// The statuses the filter can end with (jwt_verify_lib status.h).
const (
	Ok Status = iota
	JwtMissed
	JwtNotYetValid
	JwtExpired
	JwtBadFormat
	JwtHeaderParseErrorBadBase64
	JwtHeaderParseErrorBadJSON
	JwtHeaderBadAlg
	JwtHeaderNotImplementedAlg
	JwtHeaderBadKid
	JwtPayloadParseErrorBadBase64
	JwtPayloadParseErrorBadJSON
	JwtPayloadParseErrorIssNotString
	JwtPayloadParseErrorSubNotString
	JwtPayloadParseErrorIatNotInteger
	JwtPayloadParseErrorNbfNotInteger
	JwtPayloadParseErrorExpNotInteger
	JwtPayloadParseErrorJtiNotString
	JwtPayloadParseErrorAudNotString
	JwtSignatureParseErrorBadBase64
	JwtUnknownIssuer
	JwtAudienceNotAllowed
	JwtVerificationFail
	JwksNoValidKeys
	JwksKidAlgMismatch
)

// Messages as jwt_verify_lib's getStatusString (src/status.cc) words them.
var statusText = map[Status]string{
	Ok:                                "OK",
	JwtMissed:                         "Jwt is missing",
	JwtNotYetValid:                    "Jwt not yet valid",
	JwtExpired:                        "Jwt is expired",
	JwtBadFormat:                      "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
	JwtHeaderParseErrorBadBase64:      "Jwt header is an invalid Base64url encoded",
	JwtHeaderParseErrorBadJSON:        "Jwt header is an invalid JSON",
	JwtHeaderBadAlg:                   "Jwt header [alg] field is required and must be a string",
	JwtHeaderNotImplementedAlg:        "Jwt header [alg] is not supported",
	JwtHeaderBadKid:                   "Jwt header [kid] field is not a string",
	JwtPayloadParseErrorBadBase64:     "Jwt payload is an invalid Base64url encoded",
	JwtPayloadParseErrorBadJSON:       "Jwt payload is an invalid JSON",
	JwtPayloadParseErrorIssNotString:  "Jwt payload [iss] field is not a string",
	JwtPayloadParseErrorSubNotString:  "Jwt payload [sub] field is not a string",
	JwtPayloadParseErrorIatNotInteger: "Jwt payload [iat] field is not an integer",
	JwtPayloadParseErrorNbfNotInteger: "Jwt payload [nbf] field is not an integer",
	JwtPayloadParseErrorExpNotInteger: "Jwt payload [exp] field is not an integer",
	JwtPayloadParseErrorJtiNotString:  "Jwt payload [jti] field is not a string",
	JwtPayloadParseErrorAudNotString:  "Jwt payload [aud] field is not a string or string list",
	JwtSignatureParseErrorBadBase64:   "Jwt signature is an invalid Base64url encoded",
	JwtUnknownIssuer:                  "Jwt issuer is not configured",
	JwtAudienceNotAllowed:             "Audiences in Jwt are not allowed",
	JwtVerificationFail:               "Jwt verification fails",
	JwksNoValidKeys:                   "Jwks doesn't have any valid public key",
	JwksKidAlgMismatch:                "Jwks doesn't have key to match kid or alg from Jwt",
}

func (s Status) String() string { return statusText[s] }

// supportedAlgs are Envoy's (docs: jwt_authn_filter, "supported JWT alg").
var supportedAlgs = []jose.SignatureAlgorithm{
	jose.ES256, jose.ES384, jose.ES512, jose.HS256, jose.HS384, jose.HS512,
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA,
}

type jwt struct {
	raw        string
	alg        string
	kid        string
	payloadB64 string
	claims     map[string]any
	iss, sub   string
	aud        []string
	nbf, exp   uint64
}

func b64(s string) ([]byte, error) {
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.URLEncoding.DecodeString(s)
}

// parseJWT is Jwt::parseFromString: the shape, header and payload are
// checked here; the signature by go-jose once a key is chosen.
func parseJWT(s string) (*jwt, Status) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return nil, JwtBadFormat
	}
	j := &jwt{raw: s, payloadB64: parts[1]}
	hb, err := b64(parts[0])
	if err != nil {
		return nil, JwtHeaderParseErrorBadBase64
	}
	var hdr map[string]any
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return nil, JwtHeaderParseErrorBadJSON
	}
	alg, ok := hdr["alg"].(string)
	if !ok {
		return nil, JwtHeaderBadAlg
	}
	if !containsAlg(alg) {
		return nil, JwtHeaderNotImplementedAlg
	}
	j.alg = alg
	if k, present := hdr["kid"]; present {
		if j.kid, ok = k.(string); !ok {
			return nil, JwtHeaderBadKid
		}
	}
	pb, err := b64(parts[1])
	if err != nil {
		return nil, JwtPayloadParseErrorBadBase64
	}
	dec := json.NewDecoder(bytes.NewReader(pb))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, JwtPayloadParseErrorBadJSON
	}
	str := func(k string, bad Status) (string, Status) {
		v, present := claims[k]
		if !present {
			return "", Ok
		}
		s, ok := v.(string)
		if !ok {
			return "", bad
		}
		return s, Ok
	}
	integer := func(k string, bad Status) (uint64, Status) {
		v, present := claims[k]
		if !present {
			return 0, Ok
		}
		n, ok := v.(json.Number)
		if !ok {
			return 0, bad
		}
		f, err := n.Float64()
		if err != nil || f < 0 || f > math.MaxInt64 {
			return 0, bad
		}
		return uint64(f), Ok
	}
	var st Status
	if j.iss, st = str("iss", JwtPayloadParseErrorIssNotString); st != Ok {
		return nil, st
	}
	if j.sub, st = str("sub", JwtPayloadParseErrorSubNotString); st != Ok {
		return nil, st
	}
	if _, st = str("jti", JwtPayloadParseErrorJtiNotString); st != Ok {
		return nil, st
	}
	if _, st = integer("iat", JwtPayloadParseErrorIatNotInteger); st != Ok {
		return nil, st
	}
	if j.nbf, st = integer("nbf", JwtPayloadParseErrorNbfNotInteger); st != Ok {
		return nil, st
	}
	if j.exp, st = integer("exp", JwtPayloadParseErrorExpNotInteger); st != Ok {
		return nil, st
	}
	switch a := claims["aud"].(type) {
	case nil:
	case string:
		j.aud = []string{a}
	case []any:
		for _, e := range a {
			s, ok := e.(string)
			if !ok {
				return nil, JwtPayloadParseErrorAudNotString
			}
			j.aud = append(j.aud, s)
		}
	default:
		return nil, JwtPayloadParseErrorAudNotString
	}
	if _, err := b64(parts[2]); err != nil {
		return nil, JwtSignatureParseErrorBadBase64
	}
	// Numbers go to the metadata as doubles, as protobuf's Struct holds
	// them (Envoy converts the JSON payload the same way).
	j.claims = plainNumbers(claims).(map[string]any)
	return j, Ok
}

func plainNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = plainNumbers(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = plainNumbers(e)
		}
		return x
	}
	return v
}

func containsAlg(a string) bool {
	for _, s := range supportedAlgs {
		if string(s) == a {
			return true
		}
	}
	return false
}

// verifyTime is Jwt::verifyTimeConstraint: not before nbf − skew, not
// after exp + skew (exp 0: none).
func (j *jwt) verifyTime(now time.Time, skew time.Duration) Status {
	n := uint64(now.Unix())
	s := uint64(skew / time.Second)
	if j.nbf > n+s {
		return JwtNotYetValid
	}
	if j.exp != 0 && n > j.exp+s {
		return JwtExpired
	}
	return Ok
}

// metadata is the payload as the filter writes it to dynamic metadata:
// the claims, with the space-delimited ones (Istio: scope, permission)
// split into lists.
func (j *jwt) metadata(spaceDelimited []string) *structpb.Struct {
	m := make(map[string]any, len(j.claims))
	for k, v := range j.claims {
		m[k] = v
	}
	for _, c := range spaceDelimited {
		if s, ok := m[c].(string); ok {
			var list []any
			for _, f := range strings.Split(s, " ") {
				if f != "" {
					list = append(list, f)
				}
			}
			if len(list) > 0 { // Envoy leaves an all-blank string as it is
				m[c] = list
			}
		}
	}
	st, err := structpb.NewStruct(m)
	if err != nil {
		return &structpb.Struct{}
	}
	return st
}

// keySet is a provider's JWKS. Keys Envoy would skip (unknown kty, bad
// fields) are skipped here too, each read on its own.
type keySet struct {
	keys []jose.JSONWebKey
}

func parseKeySet(raw string) *keySet {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	ks := &keySet{}
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		// As Envoy's local_jwks: what is not a JWKS may be PEM public keys
		// (jwt_verify_lib's Jwks::PEM).
		ks.keys = pemKeys([]byte(raw))
		return ks
	}
	for _, k := range doc.Keys {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(k); err != nil {
			continue
		}
		ks.keys = append(ks.keys, jwk)
	}
	return ks
}

// pemKeys are the public keys of PEM "PUBLIC KEY" blocks (PKIX: RSA,
// ECDSA, Ed25519), without kid or alg, so they match any token's; other
// blocks are skipped.
func pemKeys(raw []byte) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for {
		var b *pem.Block
		b, raw = pem.Decode(raw)
		if b == nil {
			return out
		}
		if b.Type != "PUBLIC KEY" {
			continue
		}
		if pub, err := x509.ParsePKIXPublicKey(b.Bytes); err == nil {
			out = append(out, jose.JSONWebKey{Key: pub})
		}
	}
}

// verify is jwt_verify_lib's verifyJwtWithoutTimeChecking: keys whose
// kid (when both have one) or alg (when the key has one) differ from the
// token's are skipped; none left is JwksKidAlgMismatch; none of the rest
// verifying (a key of another type cannot) is JwtVerificationFail.
func (ks *keySet) verify(j *jwt) Status {
	if len(ks.keys) == 0 {
		return JwksNoValidKeys
	}
	sig, err := jose.ParseSignedCompact(j.raw, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(j.alg)})
	if err != nil {
		return JwtVerificationFail
	}
	tried := false
	for i := range ks.keys {
		k := &ks.keys[i]
		if j.kid != "" && k.KeyID != "" && k.KeyID != j.kid {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != j.alg {
			continue
		}
		// As verifyJwtWithoutTimeChecking: a key passing the kid and alg
		// checks counts as matched even if its type cannot verify alg.
		tried = true
		pub, ok := verificationKey(k.Key, j.alg)
		if !ok {
			continue
		}
		if _, err := sig.Verify(pub); err == nil {
			return Ok
		}
	}
	if !tried {
		return JwksKidAlgMismatch
	}
	return JwtVerificationFail
}

// verificationKey is the key's public half if its type fits alg (RS/PS:
// RSA, ES: EC on the alg's curve, HS: oct, EdDSA: Ed25519).
func verificationKey(key any, alg string) (any, bool) {
	if s, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		key = s.Public()
	}
	switch {
	case strings.HasPrefix(alg, "RS"), strings.HasPrefix(alg, "PS"):
		k, ok := key.(*rsa.PublicKey)
		return k, ok
	case strings.HasPrefix(alg, "ES"):
		k, ok := key.(*ecdsa.PublicKey)
		if !ok {
			return nil, false
		}
		want := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg]
		return k, k.Curve == want
	case strings.HasPrefix(alg, "HS"):
		k, ok := key.([]byte)
		return k, ok
	case alg == "EdDSA":
		k, ok := key.(ed25519.PublicKey)
		return k, ok
	}
	return nil, false
}
