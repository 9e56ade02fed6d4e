// Package jsondoc reads values out of decoded JSON documents
// (encoding/json's map[string]any and []any), for tests that check response
// shapes field by field without declaring a struct for every shape.
package jsondoc

// At walks v by object keys (string) and array indexes (int); nil when a
// step is missing or of the wrong kind.
func At(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k < 0 || k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

// Str is v as a string, "" when it is not one.
func Str(v any) string {
	s, _ := v.(string)
	return s
}
