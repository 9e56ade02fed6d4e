// Package admin serves the admin API: tenants, their budgets and keys, and
// their usage, changed at run time without a redeploy. Changes go through a
// tenant.Registry, which stores them in Redis so that every replica serves
// them (see package tenant for how they override the budgets file).
//
// # Authentication
//
// Every request carries Authorization: Bearer <admin token>, compared in
// constant time. A missing or wrong token is 401. A Handler with no token
// is disabled and answers every request 403 with a message saying so: an
// admin API open to anyone would hand out keys and budgets. (The gateway
// does not mount a Handler at all without QUOTAGATE_ADMIN_TOKEN, so there
// its paths answer 404 UnknownOperationException like any other unknown
// path.)
//
// # Endpoints
//
// Bodies are JSON (a PUT body may also be YAML), at most 1 MiB; responses
// are JSON. Tenant definitions use the budgets file's field names.
//
//	GET    /admin/v1/tenants
//	    200 {"tenants": [tenant, ...]}, sorted by id.
//	GET    /admin/v1/tenants/{id}
//	    200 tenant: {"id", "source": "file"|"admin", "api_keys", "access_keys",
//	    "models", "budgets", "keys": [{"key_id", "type": "bearer"|"sigv4",
//	    "origin": "file"|"admin"|"issued"}]}. api_keys, access_keys, models
//	    and budgets are the definition (left out when empty: no models means
//	    every model); keys are the credentials in force, issued ones
//	    included, revoked ones not. No secret is ever returned here.
//	PUT    /admin/v1/tenants/{id}
//	    Creates (201) or replaces (200) the tenant's definition, overriding
//	    the file's; returns the tenant. The read-only fields of a GET
//	    (id, source, keys) are ignored, so a tenant can be read, edited and
//	    written back; a different id is refused.
//	PATCH  /admin/v1/tenants/{id}
//	    A JSON merge patch (RFC 7386) of the definition in force (file or
//	    override), stored as the override: {"budgets": {"*": {"tpm": 5000}}}
//	    sets one limit, {"budgets": {"m": null}} removes a budget. Lists
//	    are replaced whole. 200 with the tenant.
//	DELETE /admin/v1/tenants/{id}
//	    Hides the tenant, even if the file defines it (a tombstone); 204.
//	DELETE /admin/v1/tenants/{id}/override
//	    Removes the override: the file's definition is in force again; 204.
//	POST   /admin/v1/tenants/{id}/keys   {"type": "bearer"|"sigv4"}
//	    Issues a key; 201 with the secret, returned this once only:
//	    {"type": "bearer", "key_id", "api_key"} or
//	    {"type": "sigv4", "access_key_id", "secret_access_key"}.
//	DELETE /admin/v1/tenants/{id}/keys/{key_id}
//	    Revokes a key (a bearer key by its "k-..." id, an access key by its
//	    id), of any origin, file keys included; every replica refuses it
//	    from its next request. 204. A revoked key id is refused for good,
//	    in every tenant: a PUT or PATCH that names it (its hash in api_keys,
//	    its id in access_keys) is 400 with that field, and a budgets file
//	    that lists it again, under any tenant, does not bring it back.
//	GET    /admin/v1/tenants/{id}/usage[?model=id]
//	    200 {"tenant", "models": [{"model", "pool", "limits",
//	    "guaranteed_tpm", "usage": {"window_tokens", "window_requests",
//	    "day_tokens", "in_flight"}}], "all": {"limits", "usage"}}: the
//	    tenant's counters in each model pool (tokens and requests in the
//	    current window, tokens today, requests in flight) and in its "*"
//	    budget when it has one with a limit ("all" is left out otherwise:
//	    a "*" budget without limits is never counted, so it would read 0
//	    whatever the tenant did). Models reported: the budgets file's that the
//	    tenant may call, the tenant's budget keys, its allowed models that
//	    are not globs, and each ?model= asked for.
//
// Errors are {"message": "...", "field": "budgets[\"*\"].tpm", "errors":
// [{"message", "field"}, ...]}: 400 for a bad input (field names the first
// problem's field, errors lists all of them; nothing was written), 401 for
// a bad admin token, 403 when the API is disabled, 404 for an unknown
// tenant, key or route, 405 for a wrong method, 409 when concurrent changes
// kept conflicting, 413 for a body over 1 MiB, 501 for an access key without
// a secrets key configured, 503 when Redis cannot be reached.
package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/quotagate/quotagate/quota"
	"github.com/quotagate/quotagate/tenant"
)

// MaxBodyBytes caps a request body: a tenant definition is small, and the
// cap keeps a careless or hostile client from filling memory.
const MaxBodyBytes = 1 << 20

// Handler serves /admin/v1/.... Set its fields before the first request;
// the zero value answers 403 (no token).
type Handler struct {
	// Token is the admin token. Empty disables the API.
	Token string
	// Tenants is where tenants are read and written. Nil: every tenant
	// route is 503.
	Tenants *tenant.Registry
	// Usage reads the budget counters for the usage endpoint; nil makes it
	// 501.
	Usage quota.UsageReader
	// Config returns the budgets file in force, for the pools the usage
	// endpoint reports. Nil: no file pools.
	Config func() *quota.Config
	// Logger records each change (never a secret); nil means
	// slog.Default().
	Logger *slog.Logger

	once sync.Once
	mux  *http.ServeMux
}

var _ http.Handler = (*Handler)(nil)

// ServeHTTP authenticates the request, then routes it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.once.Do(h.init)
	if h.Token == "" {
		writeError(w, http.StatusForbidden, "the admin API is disabled: no admin token is configured (set QUOTAGATE_ADMIN_TOKEN)", "")
		return
	}
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="quotagate-admin"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong admin token (Authorization: Bearer <token>)", "")
		return
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	}
	h.mux.ServeHTTP(w, r)
}

// authorized compares the token in constant time. Both sides are hashed
// first, so that the comparison takes the same time whatever the length of
// the token presented, and leaks nothing about the configured one's.
func (h *Handler) authorized(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	want := sha256.Sum256([]byte(h.Token))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

func (h *Handler) init() {
	m := http.NewServeMux()
	m.HandleFunc("GET /admin/v1/tenants", h.list)
	m.HandleFunc("GET /admin/v1/tenants/{id}", h.get)
	m.HandleFunc("PUT /admin/v1/tenants/{id}", h.put)
	m.HandleFunc("PATCH /admin/v1/tenants/{id}", h.patch)
	m.HandleFunc("DELETE /admin/v1/tenants/{id}", h.delete)
	m.HandleFunc("DELETE /admin/v1/tenants/{id}/override", h.reset)
	m.HandleFunc("POST /admin/v1/tenants/{id}/keys", h.issue)
	m.HandleFunc("DELETE /admin/v1/tenants/{id}/keys/{key_id}", h.revoke)
	m.HandleFunc("GET /admin/v1/tenants/{id}/usage", h.usage)
	// Patterns without a method are less specific than those with one, so
	// these catch only the wrong methods: answered in JSON, like the rest,
	// rather than by ServeMux's plain-text 405.
	for path, allow := range map[string]string{
		"/admin/v1/tenants":                    "GET",
		"/admin/v1/tenants/{id}":               "GET, PUT, PATCH, DELETE",
		"/admin/v1/tenants/{id}/override":      "DELETE",
		"/admin/v1/tenants/{id}/keys":          "POST",
		"/admin/v1/tenants/{id}/keys/{key_id}": "DELETE",
		"/admin/v1/tenants/{id}/usage":         "GET",
	} {
		m.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed here; allowed: "+allow, "")
		})
	}
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such admin endpoint: "+r.URL.Path, "")
	})
	h.mux = m
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// logChange records a change: who changed what, never a secret.
func (h *Handler) logChange(r *http.Request, action, id string, attrs ...any) {
	h.logger().Info("admin change", append([]any{"action", action, "tenant", id, "remote", r.RemoteAddr}, attrs...)...)
}

func (h *Handler) registry(w http.ResponseWriter) (*tenant.Registry, bool) {
	if h.Tenants == nil {
		writeError(w, http.StatusServiceUnavailable, "no tenant registry is configured", "")
		return nil, false
	}
	return h.Tenants, true
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	reg, ok := h.registry(w)
	if !ok {
		return
	}
	dir := reg.Current(r.Context())
	out := struct {
		Tenants []tenantView `json:"tenants"`
	}{Tenants: []tenantView{}}
	for _, t := range dir.List() {
		out.Tenants = append(out.Tenants, viewOf(t))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	reg, ok := h.registry(w)
	if !ok {
		return
	}
	id := r.PathValue("id")
	t, found := lookup(reg.Current(r.Context()), id)
	if !found {
		writeError(w, http.StatusNotFound, "no tenant "+quoted(id), "")
		return
	}
	writeJSON(w, http.StatusOK, viewOf(t))
}

// lookup finds a configured tenant: not the open-mode DefaultID, which
// Directory.Get also knows but which is nobody's to administer.
func lookup(dir *tenant.Directory, id string) (*tenant.Tenant, bool) {
	if dir.Open() {
		return nil, false
	}
	return dir.Get(id)
}

func (h *Handler) put(w http.ResponseWriter, r *http.Request) {
	reg, ok := h.registry(w)
	if !ok {
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	t, created, err := reg.Put(r.Context(), id, body)
	if err != nil {
		writeWriteError(w, err, id)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	h.logChange(r, "put", id, "created", created)
	writeTenant(w, status, t, id)
}

func (h *Handler) patch(w http.ResponseWriter, r *http.Request) {
	reg, ok := h.registry(w)
	if !ok {
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	t, err := reg.Patch(r.Context(), id, body)
	if err != nil {
		writeWriteError(w, err, id)
		return
	}
	h.logChange(r, "patch", id)
	writeTenant(w, http.StatusOK, t, id)
}

// delete hides a tenant (a tombstone over the file's definition).
func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	h.change(w, r, "delete", (*tenant.Registry).Delete)
}

// reset removes a tenant's override: the file's definition is in force
// again.
func (h *Handler) reset(w http.ResponseWriter, r *http.Request) {
	h.change(w, r, "reset", (*tenant.Registry).Reset)
}

// change applies a body-less write to the tenant in the path, logs it as
// action, and answers 204.
func (h *Handler) change(w http.ResponseWriter, r *http.Request, action string, write func(*tenant.Registry, context.Context, string) error) {
	reg, ok := h.registry(w)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if err := write(reg, r.Context(), id); err != nil {
		writeWriteError(w, err, id)
		return
	}
	h.logChange(r, action, id)
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) issue(w http.ResponseWriter, r *http.Request) {
	reg, ok := h.registry(w)
	if !ok {
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		Type string `json:"type"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		field := ""
		// encoding/json names an unknown field as: json: unknown field "x".
		if _, name, ok := strings.Cut(err.Error(), "unknown field "); ok {
			field = strings.Trim(name, `"`)
		}
		writeError(w, http.StatusBadRequest, `the body must be {"type": "bearer"} or {"type": "sigv4"}: `+err.Error(), field)
		return
	}
	id := r.PathValue("id")
	k, err := reg.IssueKey(r.Context(), id, req.Type)
	if err != nil {
		writeWriteError(w, err, id)
		return
	}
	h.logChange(r, "issue key", id, "key_id", k.ID, "type", k.Type)
	// The secret is in this response only: keep it out of caches.
	w.Header().Set("Cache-Control", "no-store")
	switch k.Type {
	case tenant.KeyBearer:
		writeJSON(w, http.StatusCreated, map[string]string{"type": k.Type, "key_id": k.ID, "api_key": k.Secret})
	default:
		writeJSON(w, http.StatusCreated, map[string]string{"type": k.Type, "access_key_id": k.ID, "secret_access_key": k.Secret})
	}
}

func (h *Handler) revoke(w http.ResponseWriter, r *http.Request) {
	reg, ok := h.registry(w)
	if !ok {
		return
	}
	id, keyID := r.PathValue("id"), r.PathValue("key_id")
	if err := reg.RevokeKey(r.Context(), id, keyID); err != nil {
		if errors.Is(err, tenant.ErrKeyNotFound) {
			writeError(w, http.StatusNotFound, "tenant "+quoted(id)+" has no key "+quoted(keyID)+" in force", "")
			return
		}
		writeWriteError(w, err, id)
		return
	}
	h.logChange(r, "revoke key", id, "key_id", keyID)
	w.WriteHeader(http.StatusNoContent)
}

// readBody reads a capped body; false when it answered an error.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "the body is over 1 MiB", "")
			return nil, false
		}
		writeError(w, http.StatusBadRequest, "reading the body: "+err.Error(), "")
		return nil, false
	}
	return body, true
}

// writeWriteError maps a tenant write error to a status.
func writeWriteError(w http.ResponseWriter, err error, id string) {
	var inv *tenant.InvalidError
	switch {
	case errors.As(err, &inv):
		writeInvalid(w, inv)
	case errors.Is(err, tenant.ErrNotFound):
		writeError(w, http.StatusNotFound, "no tenant "+quoted(id), "")
	case errors.Is(err, tenant.ErrKeyNotFound):
		writeError(w, http.StatusNotFound, err.Error(), "")
	case errors.Is(err, tenant.ErrNoOverride):
		writeError(w, http.StatusNotFound, "tenant "+quoted(id)+" has no override to remove", "")
	case errors.Is(err, tenant.ErrConflict):
		writeError(w, http.StatusConflict, err.Error(), "")
	case errors.Is(err, tenant.ErrNoSecretsKey):
		writeError(w, http.StatusNotImplemented, err.Error()+" (set QUOTAGATE_SECRETS_KEY)", "type")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, "the tenant store did not answer in time; nothing was written", "")
	default:
		writeError(w, http.StatusServiceUnavailable, "the tenant store failed: "+err.Error(), "")
	}
}

// problem is one error of a response.
type problem struct {
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

type errorBody struct {
	Message string    `json:"message"`
	Field   string    `json:"field,omitempty"`
	Errors  []problem `json:"errors,omitempty"`
}

func writeInvalid(w http.ResponseWriter, inv *tenant.InvalidError) {
	body := errorBody{Message: "invalid input"}
	for _, p := range inv.Problems {
		msg := p.Msg
		if p.Path == "" {
			msg = p.Error() // keeps a line number, if any
		}
		body.Errors = append(body.Errors, problem{Message: msg, Field: p.Path})
	}
	if len(body.Errors) > 0 {
		body.Message, body.Field = body.Errors[0].Message, body.Errors[0].Field
		if body.Field != "" {
			body.Message = body.Field + ": " + body.Message
		}
	}
	writeJSON(w, http.StatusBadRequest, body)
}

func writeError(w http.ResponseWriter, status int, msg, field string) {
	writeJSON(w, status, errorBody{Message: msg, Field: field})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status = http.StatusInternalServerError
		data = []byte(`{"message": "encoding the response failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}

// tenantView is a tenant as the API shows it.
type tenantView struct {
	ID     string `json:"id"`
	Source string `json:"source"`
	tenant.Definition
	Keys []keyView `json:"keys"`
}

type keyView struct {
	ID     string `json:"key_id"`
	Type   string `json:"type"`
	Origin string `json:"origin"`
}

func viewOf(t *tenant.Tenant) tenantView {
	v := tenantView{ID: t.ID, Source: t.Source, Definition: tenant.DefinitionOf(t.Definition()), Keys: []keyView{}}
	for _, k := range t.Keys() {
		v.Keys = append(v.Keys, keyView(k))
	}
	return v
}

// writeTenant answers with the tenant a write left; t is nil only in a
// race with a delete, which the caller can see with a GET.
func writeTenant(w http.ResponseWriter, status int, t *tenant.Tenant, id string) {
	if t == nil {
		writeJSON(w, status, map[string]string{"id": id})
		return
	}
	writeJSON(w, status, viewOf(t))
}

func quoted(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
