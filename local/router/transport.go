package router

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// inProcess is an http.RoundTripper that serves requests for the hosts of in-process handlers
// by calling the handler directly, and sends every other request through next.
type inProcess struct {
	handlers map[string]http.Handler // by host; read-only once the router is built
	next     http.RoundTripper
}

func (t *inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	h, ok := t.handlers[req.URL.Host]
	if !ok {
		return t.next.RoundTrip(req)
	}

	// Shape the request as a server would receive it.
	sreq := req.Clone(req.Context())
	sreq.URL = &url.URL{Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery}
	if sreq.URL.Path == "" {
		sreq.URL.Path = "/" // what the client puts on the wire
	}
	sreq.RequestURI = sreq.URL.RequestURI()
	sreq.Host = req.URL.Host
	sreq.RemoteAddr = "in-process"
	sreq.Proto, sreq.ProtoMajor, sreq.ProtoMinor = "HTTP/1.1", 1, 1
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}

	w := &recorder{header: http.Header{}}
	done := make(chan error, 1)
	go func() {
		defer func() {
			// A panicking handler breaks the connection in net/http: the client sees a
			// transport error, which the router retries.
			if v := recover(); v != nil {
				done <- fmt.Errorf("in-process handler for %s panicked: %v", req.URL.Host, v)
			}
		}()
		h.ServeHTTP(w, sreq)
		done <- nil
	}()
	select {
	case err := <-done:
		if req.Body != nil {
			req.Body.Close()
		}
		if err != nil {
			return nil, err
		}
		return w.response(req), nil
	case <-req.Context().Done():
		// The handler may still be running; it writes into a recorder nobody reads.
		return nil, req.Context().Err()
	}
}

// recorder is the http.ResponseWriter of an in-process call.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *recorder) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

// Flush is a no-op: the response is handed over when the handler returns.
func (w *recorder) Flush() {}

func (w *recorder) response(req *http.Request) *http.Response {
	w.WriteHeader(http.StatusOK)
	h := w.header.Clone()
	h.Set("Content-Length", strconv.Itoa(w.body.Len()))
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", w.code, http.StatusText(w.code)),
		StatusCode:    w.code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(w.body.Bytes())),
		ContentLength: int64(w.body.Len()),
		Request:       req,
	}
}
