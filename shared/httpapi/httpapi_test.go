package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

func TestDecode(t *testing.T) {
	type body struct {
		Name  string         `json:"name"`
		Count int            `json:"count"`
		Inner map[string]any `json:"inner"`
	}
	tests := map[string]struct {
		body      string
		ctype     string
		wantField string
		wantCode  int
	}{
		"ok":            {`{"name":"a","count":1}`, "application/json", "", 200},
		"unknown field": {`{"nom":"a"}`, "application/json", "nom", 400},
		"wrong type":    {`{"count":"x"}`, "application/json", "count", 400},
		"syntax":        {`{"name":`, "application/json", "", 400},
		"empty":         {``, "application/json", "", 400},
		"trailing data": {`{} {}`, "application/json", "", 400},
		"too large":     {`{"name":"` + strings.Repeat("x", 200) + `"}`, "application/json", "", 413},
		"wrong ctype":   {`{}`, "text/plain", "", 415},
		"form ctype":    {`{}`, "application/x-www-form-urlencoded", "", 415},
		"prefix ctype":  {`{}`, "application/jsonx", "", 415},
		"charset ctype": {`{}`, "application/json; charset=utf-8", "", 200},
		"no ctype":      {`{}`, "", "", 415},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tc.body))
			if tc.ctype != "" {
				r.Header.Set("Content-Type", tc.ctype)
			}
			var b body
			err := Decode(httptest.NewRecorder(), r, 100, &b)
			if got := Status(err); got != tc.wantCode {
				t.Fatalf("status %d (%v), want %d", got, err, tc.wantCode)
			}
			var ie *jobs.InvalidError
			if errors.As(err, &ie) && ie.Field != tc.wantField {
				t.Errorf("field %q, want %q", ie.Field, tc.wantField)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	tests := map[error]int{
		fmt.Errorf("get: %w", jobs.ErrNotFound):  404,
		jobs.Invalid("x", "bad"):                 400,
		fmt.Errorf("x: %w", jobs.ErrForbidden):   403,
		fmt.Errorf("x: %w", jobs.ErrConflict):    409,
		fmt.Errorf("x: %w", jobs.ErrUnavailable): 503,
		errors.New("boom"):                       500,
		fmt.Errorf("%w: limit 1", ErrTooLarge):   413,
	}
	for err, want := range tests {
		if got := Status(err); got != want {
			t.Errorf("Status(%v) = %d, want %d", err, got, want)
		}
	}
	w := httptest.NewRecorder()
	Error(w, httptest.NewRequest("GET", "/", nil), errors.New("secret internal detail"))
	if strings.Contains(w.Body.String(), "secret internal detail") || w.Code != 500 {
		t.Errorf("internal error leaked or wrong code: %d %s", w.Code, w.Body)
	}
}
