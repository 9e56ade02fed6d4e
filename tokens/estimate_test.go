package tokens

import (
	"strings"
	"testing"
)

func TestEstimateText(t *testing.T) {
	for _, c := range []struct {
		s    string
		want int
	}{
		{"", 0},
		{"a", 1},
		{"abcdefg", 2},  // 7 ASCII bytes at 3.5 a token
		{"abcdefgh", 3}, // rounded up
		{"日本語", 3},      // a token a CJK rune
		{"привет", 3},   // half a token a Cyrillic rune
		{"café", 2},     // 3 ASCII + one two-byte rune: 12+7 fourteenths
		{"👍👍", 4},       // two tokens a four-byte rune
		{"\xff\xfe", 4}, // invalid UTF-8 does not panic
		{"\x80\x80", 0}, // lone continuation bytes
	} {
		if got := EstimateText(c.s); got != c.want {
			t.Errorf("EstimateText(%q) = %d, want %d", c.s, got, c.want)
		}
	}
}

// TestEstimateTextEnglish checks the heuristic against the usual rule of
// thumb (about 4 bytes a token for English): within a factor of it, and not
// below it.
func TestEstimateTextEnglish(t *testing.T) {
	text := strings.Repeat("The quick brown fox jumps over the lazy dog, and then it rests in the shade of an old oak tree. ", 200)
	quarter := len(text) / 4
	got := EstimateText(text)
	if got < quarter || got > 2*quarter {
		t.Errorf("EstimateText(%d bytes of English) = %d, want %d..%d", len(text), got, quarter, 2*quarter)
	}
}

// TestEstimateTextCJK checks that text in other scripts is not undercounted
// the way a bytes/4 rule undercounts it.
func TestEstimateTextCJK(t *testing.T) {
	text := strings.Repeat("東京は日本の首都であり、世界最大の都市圏の一つです。", 50)
	runes := len([]rune(text))
	if got := EstimateText(text); got < runes*3/4 || got > 2*runes {
		t.Errorf("EstimateText(%d CJK runes) = %d, want %d..%d", runes, got, runes*3/4, 2*runes)
	}
}

func TestDocumentTokens(t *testing.T) {
	if got := documentTokens(100, false); got != documentMinTokens {
		t.Errorf("documentTokens(100, binary) = %d, want %d", got, documentMinTokens)
	}
	if got := documentTokens(1_000_000, false); got != 1_000_000/documentBytesPerToken {
		t.Errorf("documentTokens(1MB, binary) = %d, want %d", got, 1_000_000/documentBytesPerToken)
	}
	if got := documentTokens(7000, true); got != 2000 {
		t.Errorf("documentTokens(7000, text) = %d, want 2000", got)
	}
}
