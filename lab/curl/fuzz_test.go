package curl

import (
	"strings"
	"testing"
)

// FuzzParse: whatever command line a pod's user types, curl's parsing
// answers with options or an error, never a panic; the URLs it keeps parse
// or are refused the same way.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"-sS\x00productpage:9080/productpage",
		"-s\x00-o\x00/dev/null\x00-w\x00%{http_code}\\n\x00http://h:1/",
		"-sSI\x00-H\x00Host: x\x00--resolve\x00a:80:127.0.0.1\x00http://a/",
		"-X\x00POST\x00-d\x00a=b\x00-d\x00@-\x00-u\x00u:p\x00http://[::1]:8080/x",
		"--max-time\x000.5\x00--connect-timeout\x001\x00-m0.3\x00-Hx:y\x00-Lfkv\x00h",
		"-w\x00%{url_effective} %{bogus} %%\\t\x00--url\x00ftp://x/",
		"-o",
		"--unknown\x00x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		o, err := parse(strings.Split(line, "\x00"))
		if err != nil {
			return
		}
		for _, u := range o.urls {
			_, _ = parseURL(u)
		}
	})
}
