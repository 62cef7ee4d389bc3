package backend

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// resigner works around moto checking a SigV4 signature over the query string as werkzeug rebuilds the URL,
// which decodes %2F to /, where clients sign it as S3 does, with / encoded: moto refuses every signed request
// whose query holds an encoded / with SignatureDoesNotMatch (a listing under a key prefix such as wiv/, as
// wivaudit verify --prefix makes). For such a request made with keys the backend created, the front checks the
// signature as S3 does and only when it holds signs the request again over the query as moto reads it; a
// request whose signature does not hold, or whose keys it does not know, passes unchanged for moto to refuse.
type resigner struct {
	mu      sync.Mutex
	secrets map[string]string // access key ID -> secret access key
}

func (s *resigner) add(accessKey, secretKey string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.secrets == nil {
		s.secrets = map[string]string{}
	}
	s.secrets[accessKey] = secretKey
}

// sigV4 is the parsed Authorization header of a SigV4 request.
type sigV4 struct {
	accessKey, scope, signature string
	signedHeaders               []string
}

func parseSigV4(auth string) (sigV4, bool) {
	rest, ok := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 ")
	if !ok {
		return sigV4{}, false
	}
	var a sigV4
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			a.accessKey, a.scope, _ = strings.Cut(v, "/")
		case "SignedHeaders":
			a.signedHeaders = strings.Split(v, ";")
		case "Signature":
			a.signature = v
		}
	}
	return a, a.accessKey != "" && a.scope != "" && a.signature != "" && len(a.signedHeaders) > 0
}

// resign signs r again for moto when its query holds an encoded / and its signature holds as S3 checks it, and
// reports whether it did.
func (s *resigner) resign(r *http.Request) bool {
	if !strings.Contains(strings.ToUpper(r.URL.RawQuery), "%2F") {
		return false
	}
	a, ok := parseSigV4(r.Header.Get("Authorization"))
	if !ok {
		return false
	}
	s.mu.Lock()
	secret, known := s.secrets[a.accessKey]
	s.mu.Unlock()
	if !known || !hmac.Equal([]byte(signature(r, a, secret, s3Query(r.URL.RawQuery))), []byte(a.signature)) {
		return false
	}
	moto := signature(r, a, secret, motoQuery(r.URL.RawQuery))
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+a.accessKey+"/"+a.scope+
		", SignedHeaders="+strings.Join(a.signedHeaders, ";")+", Signature="+moto)
	return true
}

// s3Query is the canonical query string as S3 computes it: each name and value decoded, then encoded with only
// the unreserved characters left as they are, sorted by name and value.
func s3Query(raw string) string {
	values, _ := url.ParseQuery(raw)
	var pairs []string
	for k, vs := range values {
		for _, v := range vs {
			pairs = append(pairs, awsEscape(k)+"="+awsEscape(v))
		}
	}
	slices.Sort(pairs)
	return strings.Join(pairs, "&")
}

func awsEscape(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }

// motoQuery is the canonical query string as moto computes it: the pairs as received, with %2F decoded to /
// (werkzeug's URL), sorted by name and value.
func motoQuery(raw string) string {
	raw = strings.NewReplacer("%2F", "/", "%2f", "/").Replace(raw)
	type pair struct{ k, v string }
	var pairs []pair
	for _, p := range strings.Split(raw, "&") {
		k, v, _ := strings.Cut(p, "=")
		pairs = append(pairs, pair{k, v})
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if a.k != b.k {
			return strings.Compare(a.k, b.k)
		}
		return strings.Compare(a.v, b.v)
	})
	out := make([]string, len(pairs))
	for i, p := range pairs {
		out[i] = p.k + "=" + p.v
	}
	return strings.Join(out, "&")
}

// signature is the SigV4 signature of r over the given canonical query, with the headers, scope and payload
// hash the request names (S3 does not escape the path again).
func signature(r *http.Request, a sigV4, secret, query string) string {
	var headers strings.Builder
	for _, h := range a.signedHeaders {
		var v string
		switch h {
		case "host":
			v = r.Host
		case "content-length":
			v = strconv.FormatInt(r.ContentLength, 10)
		default:
			v = strings.Join(r.Header.Values(h), ",")
		}
		headers.WriteString(h + ":" + strings.Join(strings.Fields(v), " ") + "\n")
	}
	canonical := strings.Join([]string{r.Method, r.URL.EscapedPath(), query, headers.String(),
		strings.Join(a.signedHeaders, ";"), r.Header.Get("X-Amz-Content-Sha256")}, "\n")
	sum := sha256.Sum256([]byte(canonical))
	toSign := "AWS4-HMAC-SHA256\n" + r.Header.Get("X-Amz-Date") + "\n" + a.scope + "\n" + hex.EncodeToString(sum[:])
	key := []byte("AWS4" + secret)
	for _, part := range strings.Split(a.scope, "/") {
		key = hmacSHA256(key, part)
	}
	return hex.EncodeToString(hmacSHA256(key, toSign))
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}
