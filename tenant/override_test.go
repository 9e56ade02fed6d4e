package tenant

import (
	"encoding/json"
	"testing"
)

type jsonRaw = json.RawMessage

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestMergePatch(t *testing.T) {
	// RFC 7386 appendix A, a selection.
	cases := []struct{ target, patch, want string }{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`{"e":null}`, `{"a":1}`, `{"a":1,"e":null}`},
		{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
	}
	for _, c := range cases {
		target, _ := toJSONValue(jsonRaw(c.target))
		patch, _ := toJSONValue(jsonRaw(c.patch))
		got, _ := toJSONValue(mergePatch(target, patch))
		want, _ := toJSONValue(jsonRaw(c.want))
		if g, w := mustJSON(got), mustJSON(want); g != w {
			t.Errorf("merge %s with %s: got %s, want %s", c.target, c.patch, g, w)
		}
	}
}
