package quota

import "strings"

// PoolID is the budget pool a requested model id draws on. Bedrock counts a
// foundation-model ARN against the same quota as the bare model id, and an
// inference-profile ARN against the same quota as the profile id, so both
// ARN forms map to the id after "foundation-model/" or
// "inference-profile/": otherwise a caller could step around a model's
// budget by spelling the model as an ARN. Every other id (application
// inference profiles, provisioned or custom models) is its own pool.
func PoolID(modelID string) string {
	if !strings.HasPrefix(modelID, "arn:") {
		return modelID
	}
	for _, kind := range []string{":foundation-model/", ":inference-profile/"} {
		if i := strings.Index(modelID, kind); i >= 0 {
			if id := modelID[i+len(kind):]; id != "" && !strings.Contains(id, "/") {
				return id
			}
		}
	}
	return modelID
}
