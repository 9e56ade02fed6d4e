package tokens

import "testing"

func TestUsageMerge(t *testing.T) {
	body := Usage{InputTokens: 10, StopReason: "end_turn", Known: true}
	headers := Usage{InputTokens: 11, OutputTokens: 5, CacheReadInputTokens: 3, CacheWriteInputTokens: 4, StopReason: "x", Known: true}
	checkUsage(t, body.Merge(headers), Usage{InputTokens: 10, OutputTokens: 5, CacheReadInputTokens: 3, CacheWriteInputTokens: 4, StopReason: "end_turn", Known: true})
	checkUsage(t, Usage{}.Merge(Usage{}), Usage{})
	checkUsage(t, Usage{}.Merge(Usage{StopReason: "stop"}), Usage{StopReason: "stop"})
}

func TestUsageFromCountTokens(t *testing.T) {
	for _, c := range []usageCase{
		{"count", `{"inputTokens":123}`, Usage{InputTokens: 123, Known: true}},
		{"zero", `{"inputTokens":0}`, Usage{Known: true}},
		{"missing", `{}`, Usage{}},
		{"wrong type", `{"inputTokens":"123"}`, Usage{}},
		{"not JSON", `oops`, Usage{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkUsage(t, UsageFromCountTokens([]byte(c.body)), c.want)
		})
	}
}

// fakeHeader is a Header over a plain map; see example_test.go for
// http.Header itself.
type fakeHeader map[string]string

func (h fakeHeader) Get(k string) string { return h[k] }

func TestUsageFromHeaders(t *testing.T) {
	for _, c := range []struct {
		name string
		h    Header
		want Usage
	}{
		{"all four", fakeHeader{
			HeaderInputTokens: "42", HeaderOutputTokens: "7", HeaderCacheReadTokens: "1000", HeaderCacheWriteTokens: "0",
		}, Usage{InputTokens: 42, OutputTokens: 7, CacheReadInputTokens: 1000, Known: true}},
		{"input and output", fakeHeader{HeaderInputTokens: "3", HeaderOutputTokens: "9"}, Usage{InputTokens: 3, OutputTokens: 9, Known: true}},
		{"garbage ignored", fakeHeader{HeaderInputTokens: "lots", HeaderOutputTokens: "-1"}, Usage{}},
		{"none", fakeHeader{}, Usage{}},
		{"nil", nil, Usage{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkUsage(t, UsageFromHeaders(c.h), c.want)
		})
	}
}

func TestCountUnmarshal(t *testing.T) {
	for _, c := range []struct {
		in      string
		n       int
		ok, err bool
	}{
		{"12", 12, true, false},
		{"0", 0, true, false},
		{"null", 0, false, false},
		{"12.0", 12, true, false},
		{"1.2e3", 1200, true, false},
		{"99999999999999999999", 0, false, true},
		{`"12"`, 0, false, true},
		{"true", 0, false, true},
	} {
		var got count
		err := got.UnmarshalJSON([]byte(c.in))
		if got.n != c.n || got.ok != c.ok || (err != nil) != c.err {
			t.Errorf("count(%s) = %d, %v, err %v, want %d, %v, err %v", c.in, got.n, got.ok, err, c.n, c.ok, c.err)
		}
	}
}
