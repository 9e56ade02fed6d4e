package admin

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/quotagate/quotagate/quota"
	"github.com/quotagate/quotagate/tenant"
)

// usageTimeout bounds the counter reads of one usage request.
const usageTimeout = 5 * time.Second

type limitsView struct {
	TPM          int64 `json:"tpm"`
	RPM          int64 `json:"rpm"`
	Concurrency  int64 `json:"concurrency"`
	TokensPerDay int64 `json:"tokens_per_day"`
}

type countersView struct {
	WindowTokens   int64 `json:"window_tokens"`
	WindowRequests int64 `json:"window_requests"`
	DayTokens      int64 `json:"day_tokens"`
	InFlight       int64 `json:"in_flight"`
}

type poolUsageView struct {
	Model string `json:"model"`
	Pool  string `json:"pool"`
	// Limits are the tenant's own in the pool; 0 is no limit.
	Limits        limitsView   `json:"limits"`
	GuaranteedTPM int64        `json:"guaranteed_tpm"`
	Usage         countersView `json:"usage"`
}

type allUsageView struct {
	Limits limitsView   `json:"limits"`
	Usage  countersView `json:"usage"`
}

type usageView struct {
	Tenant string          `json:"tenant"`
	Models []poolUsageView `json:"models"`
	All    *allUsageView   `json:"all,omitempty"`
}

func (h *Handler) usage(w http.ResponseWriter, r *http.Request) {
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
	for _, m := range r.URL.Query()["model"] {
		// A pool is one model id: a glob or an empty id names none, and
		// answering 200 for it would report counters that do not exist.
		if m == "" || strings.ContainsAny(m, "*?[") || strings.ContainsFunc(m, unicode.IsSpace) {
			writeError(w, http.StatusBadRequest, "model must be one model id as requested (no globs), got "+quoted(m), "model")
			return
		}
	}
	if h.Usage == nil {
		writeError(w, http.StatusNotImplemented, "no usage reader is configured", "")
		return
	}
	var cfg *quota.Config
	if h.Config != nil {
		cfg = h.Config()
	}
	ctx, cancel := context.WithTimeout(r.Context(), usageTimeout)
	defer cancel()
	out := usageView{Tenant: t.ID, Models: []poolUsageView{}}
	for _, m := range usageModels(t, cfg, r.URL.Query()["model"]) {
		pool := quota.PoolID(m)
		b, _ := t.Budget(pool)
		u, err := h.Usage.Usage(ctx, quota.TenantPoolBudget(t.ID, pool, b.Limits))
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "reading the usage of pool "+quoted(pool)+": "+err.Error(), "")
			return
		}
		out.Models = append(out.Models, poolUsageView{Model: m, Pool: pool, Limits: limitsView(b.Limits), GuaranteedTPM: b.GuaranteedTPM, Usage: countersView(u)})
	}
	// A "*" budget with no limit is never charged (admission skips it), so
	// its counters would always read 0: reported only when it limits.
	if b, ok := t.Budget(quota.AllModels); ok && !b.Limits.IsZero() {
		u, err := h.Usage.Usage(ctx, quota.TenantAllBudget(t.ID, b.Limits))
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, `reading the usage of the "*" budget: `+err.Error(), "")
			return
		}
		out.All = &allUsageView{Limits: limitsView(b.Limits), Usage: countersView(u)}
	}
	writeJSON(w, http.StatusOK, out)
}

// usageModels lists the models to report, one per pool, sorted by pool:
// the budgets file's models the tenant may call, the tenant's budget keys,
// its allowed models that are exact ids, and the ones asked for. Glob
// patterns cannot be enumerated, and counters exist only per pool used, so
// these are the pools a caller can know to ask about.
func usageModels(t *tenant.Tenant, cfg *quota.Config, asked []string) []string {
	byPool := map[string]string{}
	add := func(m string) {
		if m == "" || m == quota.AllModels {
			return
		}
		if _, ok := byPool[quota.PoolID(m)]; !ok {
			byPool[quota.PoolID(m)] = m
		}
	}
	for _, m := range asked {
		add(m)
	}
	if cfg != nil {
		for _, m := range slices.Sorted(maps.Keys(cfg.Models)) {
			if t.Allows(m) {
				add(m)
			}
		}
	}
	for _, m := range slices.Sorted(maps.Keys(t.Budgets)) {
		add(m)
	}
	for _, m := range t.Models {
		if !strings.ContainsAny(m, `*?[\`) {
			add(m)
		}
	}
	out := make([]string, 0, len(byPool))
	for _, pool := range slices.Sorted(maps.Keys(byPool)) {
		out = append(out, byPool[pool])
	}
	return out
}
