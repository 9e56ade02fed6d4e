package translate

import "strings"

// Prompt templates. Llama, Mistral's text completion and Titan take one
// prompt string in which the chat template marks the turns; the Bedrock user
// guide gives each family's. Rendering applies the template and ends with
// the cue for the assistant's turn; parsing recovers the turns from a
// prompt that uses the template, and otherwise takes the whole prompt as
// one user turn.

// Llama 3 and later ("Meta Llama models", and Meta's model card): header
// tokens around each role, <|eot_id|> after each turn.
const (
	llama3Begin  = "<|begin_of_text|>"
	llama3Header = "<|start_header_id|>"
	llama3EndHdr = "<|end_header_id|>"
	llama3EOT    = "<|eot_id|>"
)

func renderLlama3(c *chat) string {
	var b strings.Builder
	b.WriteString(llama3Begin)
	turn := func(r, text string, closed bool) {
		b.WriteString(llama3Header + r + llama3EndHdr + "\n\n" + text)
		if closed {
			b.WriteString(llama3EOT)
		}
	}
	if c.system != "" {
		turn("system", c.system, true)
	}
	prefill, open := c.prefill()
	msgs := c.messages
	if open {
		msgs = msgs[:len(msgs)-1]
	}
	for _, m := range msgs {
		turn(string(m.role), m.text(), true)
	}
	turn("assistant", prefill, false)
	return b.String()
}

// parseLlama3 reads a prompt that uses the Llama 3 header tokens. A role
// other than system, user and assistant (ipython, tool) is tool use.
func parseLlama3(c *chat, prompt string) {
	parts := strings.Split(prompt, llama3Header)
	if pre := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(parts[0]), llama3Begin)); pre != "" {
		c.add(user, pre)
	}
	for i, p := range parts[1:] {
		r, rest, _ := strings.Cut(p, llama3EndHdr)
		text, closed := strings.CutSuffix(strings.TrimRight(rest, " \n"), llama3EOT)
		if !closed {
			text, _, closed = strings.Cut(rest, llama3EOT)
		}
		text = strings.TrimSpace(text)
		last := i == len(parts)-2
		switch strings.TrimSpace(r) {
		case "system":
			c.system = joinText(c.system, text)
		case "user":
			c.add(user, text)
		case "assistant":
			if last && !closed && text == "" {
				continue // the cue for the answer
			}
			c.add(assistant, text)
		default:
			c.need(featTools)
		}
	}
}

// The [INST] template of Llama 2 ("[INST] <<SYS>>...<</SYS>> ... [/INST]")
// and of Mistral's text completion ("<s>[INST] ... [/INST]"), which has no
// system block: Mistral's prompt puts the system prompt at the head of the
// first instruction.
const (
	bos       = "<s>"
	eos       = "</s>"
	instOpen  = "[INST]"
	instClose = "[/INST]"
	sysOpen   = "<<SYS>>"
	sysClose  = "<</SYS>>"
)

// renderInst renders the [INST] template; sysBlock chooses Llama 2's
// <<SYS>> block over Mistral's plain prefix. Llama 2 opens each exchange
// with <s>; Mistral's user guide example opens only the first.
func renderInst(c *chat, sysBlock bool) string {
	var b strings.Builder
	prefill, open := c.prefill()
	msgs := c.messages
	if open {
		msgs = msgs[:len(msgs)-1]
	}
	first := true
	for _, m := range msgs {
		if m.role == assistant {
			b.WriteString(" " + m.text())
			if sysBlock {
				b.WriteString(" " + eos)
			} else {
				b.WriteString(eos + " ")
			}
			continue
		}
		if first || sysBlock {
			b.WriteString(bos)
		}
		b.WriteString(instOpen + " ")
		if first && c.system != "" {
			if sysBlock {
				b.WriteString(sysOpen + "\n" + c.system + "\n" + sysClose + "\n\n")
			} else {
				b.WriteString(c.system + "\n\n")
			}
		}
		first = false
		b.WriteString(m.text() + " " + instClose)
	}
	if open {
		b.WriteString(" " + prefill)
	}
	return b.String()
}

// parseInst reads a prompt in the [INST] template.
func parseInst(c *chat, prompt string) {
	segs := strings.Split(prompt, instOpen)
	if pre := strings.TrimSpace(strings.ReplaceAll(segs[0], bos, "")); pre != "" {
		c.system = pre
	}
	for i, seg := range segs[1:] {
		ask, answer, closed := strings.Cut(seg, instClose)
		ask = strings.TrimSpace(ask)
		if sys, rest, ok := strings.Cut(ask, sysClose); ok && strings.HasPrefix(ask, sysOpen) {
			c.system = joinText(c.system, strings.TrimSpace(strings.TrimPrefix(sys, sysOpen)))
			ask = strings.TrimSpace(rest)
		}
		c.add(user, ask)
		if !closed {
			continue
		}
		answer = strings.TrimSpace(answer)
		answer = strings.TrimSpace(strings.TrimSuffix(answer, bos))
		answer, ended := strings.CutSuffix(answer, eos)
		answer = strings.TrimSpace(answer)
		if answer == "" && !ended && i == len(segs)-2 {
			continue // the cue for the answer
		}
		c.add(assistant, answer)
	}
}

// Titan Text's conversational convention ("Amazon Titan Text models"):
// "User: <prompt>\nBot:" lines; the system prompt, which Titan has no field
// for, goes first.
const (
	titanUser = "User:"
	titanBot  = "Bot:"
)

func renderTitan(c *chat) string {
	var b strings.Builder
	if c.system != "" {
		b.WriteString(c.system + "\n\n")
	}
	prefill, open := c.prefill()
	msgs := c.messages
	if open {
		msgs = msgs[:len(msgs)-1]
	}
	for _, m := range msgs {
		marker := titanUser
		if m.role == assistant {
			marker = titanBot
		}
		b.WriteString(marker + " " + m.text() + "\n")
	}
	b.WriteString(titanBot)
	if open {
		b.WriteString(" " + prefill)
	}
	return b.String()
}

// parseTitan reads "User:" and "Bot:" lines. Text before the first is the
// system prompt; a prompt without them is one user turn.
func parseTitan(c *chat, prompt string) {
	var (
		cur     *message
		pre     []string
		started bool
	)
	flush := func() {
		if cur != nil {
			text := strings.TrimSpace(cur.text())
			cur.parts = []string{text}
			c.messages = append(c.messages, *cur)
			cur = nil
		}
	}
	for _, line := range strings.Split(prompt, "\n") {
		var r role
		switch {
		case strings.HasPrefix(line, titanUser):
			r, line = user, strings.TrimPrefix(line, titanUser)
		case strings.HasPrefix(line, titanBot):
			r, line = assistant, strings.TrimPrefix(line, titanBot)
		default:
			if cur != nil {
				cur.parts = append(cur.parts, line)
			} else {
				pre = append(pre, line)
			}
			continue
		}
		started = true
		flush()
		cur = &message{role: r, parts: []string{strings.TrimPrefix(line, " ")}}
	}
	if !started {
		c.add(user, strings.TrimSpace(prompt))
		return
	}
	if cur != nil && cur.role == assistant && strings.TrimSpace(cur.text()) == "" {
		cur = nil // the cue for the answer
	}
	flush()
	c.system = strings.TrimSpace(strings.Join(pre, "\n"))
	// Merge repeated roles as add does.
	msgs := c.messages
	c.messages = nil
	for _, m := range msgs {
		c.add(m.role, m.parts...)
	}
}

// joinText joins two texts with a blank line, either may be empty.
func joinText(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "\n\n" + b
}
