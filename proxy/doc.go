// Package proxy serves Bedrock Runtime's REST API and forwards each call to
// Bedrock, re-signed with the gateway's own credentials.
//
// A request is handled top to bottom in Gateway.ServeHTTP: route on the raw
// path, read and parse the body (package tokens estimates input and reads
// max tokens), build the upstream request from an allow-list of headers,
// send it through a signing http.RoundTripper, then copy the response back:
// byte for byte for plain responses and upstream errors, event by event for
// eventstreams, reading token usage as it passes. Everything the gateway
// itself refuses is answered in Bedrock's error shape, decided in one place
// (errors.go), so that the caller's AWS SDK raises a typed exception.
package proxy
