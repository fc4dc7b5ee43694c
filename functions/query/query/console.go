package query

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/httpapi"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// consoleFiles are the web console's files: hand-written HTML, CSS and JavaScript modules,
// served as they are (no build step, nothing generated; docs/console.md).
//
//go:embed console
var consoleFiles embed.FS

// ConsolePrefix is the path the web console is served under.
const ConsolePrefix = "/ui/"

// consoleCSP allows the console only its own files and its own origin: no inline script, no
// other site, and no framing (a cancel button must not be clickable through another page).
const consoleCSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// console serves the web console's files under ConsolePrefix. The files hold no data: the
// pages read everything through the /v1 API, as the caller.
func console() http.Handler {
	sub, err := fs.Sub(consoleFiles, "console")
	if err != nil {
		panic(err) // the embedded tree always has the folder
	}
	files := http.StripPrefix(ConsolePrefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", consoleCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		// Revalidate every time: a new release's files replace the old at once (the embedded
		// files have no modification time, so FileServer answers them whole).
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// Me is the body of GET /v1/me: who the caller is and what it may do, for clients (the console
// shows cancel and rerun only to submitters of the job's service).
type Me struct {
	User string `json:"user"`
	// Role is viewer, submitter or admin.
	Role string `json:"role"`
	// Services are the services the caller is scoped to; "*" is every service.
	Services []string `json:"services"`
}

func (h *Handler) serveMe(w http.ResponseWriter, r *http.Request) {
	p := auth.FromContext(r.Context())
	if p == nil {
		httpapi.Error(w, r, jobs.ErrUnauthenticated)
		return
	}
	services := p.Services
	if services == nil {
		services = []string{}
	}
	httpapi.JSON(w, http.StatusOK, Me{User: p.User, Role: p.Role.String(), Services: services})
}
