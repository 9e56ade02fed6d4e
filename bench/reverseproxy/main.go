// Command reverseproxy is the baseline for bench/load.sh: a bare
// net/http/httputil.ReverseProxy with no parsing, signing or accounting, so
// that the gateway's added cost can be read as a ratio against it.
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18092", "listen address")
	target := flag.String("target", "http://127.0.0.1:18090", "upstream URL")
	flag.Parse()
	u, err := url.Parse(*target)
	if err != nil {
		log.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = u.Host
		},
		FlushInterval: -1, // streams: flush every write, as the gateway does
		Transport:     &http.Transport{MaxIdleConnsPerHost: 512, ForceAttemptHTTP2: true},
	}
	log.Printf("reverseproxy on %s -> %s", *addr, u)
	log.Fatal(http.ListenAndServe(*addr, rp))
}
