package router

import (
	"errors"
	"net/http"
	"strings"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// ServeHTTP is the Broker ingress: POST /<namespace>/<broker> with a binary or structured
// CloudEvent. Answers, as Knative's: 202 accepted; 400 not a valid event (or its TTL ran out);
// 404 no such broker; 405 not POST; 413 too large; 503 queue full or shutting down (with
// Retry-After), which the sender retries.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Allow", "POST, OPTIONS")
	switch req.Method {
	case http.MethodOptions:
		w.Header().Set("WebHook-Allowed-Origin", "*")
		w.Header().Set("WebHook-Allowed-Rate", "*")
		w.WriteHeader(http.StatusOK)
		return
	case http.MethodPost:
	default:
		http.Error(w, "only POST", http.StatusMethodNotAllowed)
		return
	}
	p := strings.TrimSuffix(req.URL.Path, "/")
	if p == "" {
		http.NotFound(w, req)
		return
	}
	parts := strings.Split(p, "/")
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
		http.Error(w, "path must be /<namespace>/<broker>", http.StatusBadRequest)
		return
	}
	k := brokerKey{parts[1], parts[2]}
	if _, ok := r.brokers[k]; !ok {
		http.Error(w, "no broker "+k.namespace+"/"+k.name, http.StatusNotFound)
		return
	}

	req.Body = http.MaxBytesReader(w, req.Body, r.opts.maxEventBytes)
	m := cehttp.NewMessageFromHttpRequest(req)
	defer m.Finish(nil)
	ev, err := binding.ToEvent(req.Context(), m)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "event too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "not a CloudEvent: "+err.Error(), http.StatusBadRequest)
		return
	}
	switch err := r.ingest(k, *ev, false); {
	case err == nil:
		w.WriteHeader(http.StatusAccepted)
	case errors.Is(err, ErrBusy), errors.Is(err, ErrClosed):
		w.Header().Set("Retry-After", "1")
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	case errors.Is(err, ErrNoBroker):
		http.Error(w, err.Error(), http.StatusNotFound)
	default:
		http.Error(w, err.Error(), http.StatusBadRequest)
	}
}
