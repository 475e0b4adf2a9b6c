package llm

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// localGenerate returns p's reply to req, failing the test on error.
func localGenerate(t testing.TB, p *Local, req Request) Response {
	t.Helper()
	r, err := p.Generate(context.Background(), req)
	if err != nil {
		t.Fatalf("Generate(%+v): %v", req, err)
	}
	return r
}

// localStream streams req and returns the content chunks and the final one.
func localStream(t testing.TB, p *Local, req Request) (chunks []string, done Chunk) {
	t.Helper()
	err := p.Stream(context.Background(), req, func(c Chunk) error {
		if done.Done {
			t.Fatalf("chunk %+v after the Done chunk", c)
		}
		if c.Done {
			done = c
		} else {
			chunks = append(chunks, c.Content)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Stream(%+v): %v", req, err)
	}
	if !done.Done {
		t.Fatalf("Stream(%+v) ended without a Done chunk", req)
	}
	return chunks, done
}

var localTestPrompts = []string{
	"Tell me about the moon",
	"Write a few lines about an old harbour at night.",
	"How does an event loop handle a message queue?",
	"hello",
	"",
	"Describe the bridges over the river, and the tides below them.",
}

func TestLocalDeterministic(t *testing.T) {
	p, q := NewLocal(LocalOptions{}), NewLocal(LocalOptions{Seed: 1})
	for _, prompt := range localTestPrompts {
		req := Request{Prompt: prompt, Seed: Int(1), MaxTokens: 80, Temperature: Float(0.8)}
		a, b := localGenerate(t, p, req), localGenerate(t, q, req)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("prompt %q: same seed gave\n%+v\n%+v", prompt, a, b)
		}
		req.Seed = nil // falls back to LocalOptions.Seed
		if c := localGenerate(t, q, req); !reflect.DeepEqual(c, a) {
			t.Errorf("prompt %q: LocalOptions.Seed gave\n%q, want\n%q", prompt, c.Text, a.Text)
		}
		req.Seed = Int(2)
		if c := localGenerate(t, p, req); c.Text == a.Text {
			t.Errorf("prompt %q: seeds 1 and 2 gave the same reply %q", prompt, a.Text)
		}
	}
}

func TestLocalDifferentPromptsDiffer(t *testing.T) {
	p := NewLocal(LocalOptions{Seed: 5})
	seen := map[string]string{}
	for _, prompt := range append(localTestPrompts, "hello!", "Hello") {
		r := localGenerate(t, p, Request{Prompt: prompt})
		if other, ok := seen[r.Text]; ok {
			t.Errorf("prompts %q and %q gave the same reply %q", other, prompt, r.Text)
		}
		seen[r.Text] = prompt
	}
	// The whole conversation seeds the reply, not only the last message.
	msgs := func(first string) []Message {
		return []Message{{Role: "user", Content: first}, {Role: "assistant", Content: "Yes."}, {Role: "user", Content: "More, please."}}
	}
	a := localGenerate(t, p, Request{Messages: msgs("Tell me about rivers.")})
	b := localGenerate(t, p, Request{Messages: msgs("Tell me about gardens.")})
	if a.Text == b.Text {
		t.Errorf("different conversations gave the same reply %q", a.Text)
	}
}

// localCheckLanguage reports ways in which text does not look like prose.
func localCheckLanguage(t *testing.T, label, text string) {
	t.Helper()
	if text == "" {
		t.Errorf("%s: empty reply", label)
		return
	}
	if r := []rune(text)[0]; !unicode.IsUpper(r) {
		t.Errorf("%s: reply starts with %q, not a capital: %q", label, r, text)
	}
	if !strings.Contains(text, " ") || strings.TrimSpace(text) != text || strings.Contains(text, "  ") {
		t.Errorf("%s: badly spaced reply %q", label, text)
	}
	for _, bad := range []string{" ,", " .", " ?", " ;", " :", ",,", "..", ",.", ".,"} {
		if strings.Contains(text, bad) {
			t.Errorf("%s: reply contains %q: %q", label, bad, text)
		}
	}
	for _, end := range []string{". ", "? ", "! "} {
		for _, after := range strings.Split(text, end)[1:] {
			if r := []rune(after); len(r) > 0 && !unicode.IsUpper(r[0]) {
				t.Errorf("%s: no capital after %q in %q", label, end, text)
			}
		}
	}
	m := localCorpusModel()
	for i := 0; ; {
		tok, word, next := localNextToken(text, i)
		if tok == "" {
			break
		}
		i = next
		if _, ok := m.lookup[strings.ToLower(tok)]; word && !ok {
			t.Errorf("%s: word %q is not in the corpus", label, tok)
		}
	}
}

func TestLocalReadsLikeLanguage(t *testing.T) {
	p := NewLocal(LocalOptions{})
	for _, prompt := range localTestPrompts {
		for seed := int64(1); seed <= 8; seed++ {
			for _, temp := range []*float64{nil, Float(0), Float(0.5), Float(3)} {
				r := localGenerate(t, p, Request{Prompt: prompt, Seed: Int(seed), Temperature: temp})
				localCheckLanguage(t, prompt, r.Text)
				if r.FinishReason == "stop" && !strings.ContainsAny(r.Text[len(r.Text)-1:], ".?!") {
					t.Errorf("natural end without a full stop: %q", r.Text)
				}
			}
		}
	}
}

func TestLocalPromptConditioning(t *testing.T) {
	p := NewLocal(LocalOptions{})
	cases := []struct{ prompt, want string }{
		{"Tell me about the moon", "moon"},
		{"Write about lighthouses", "lighthouse"},
		{"What is an event loop?", "event"}, // rarer than "loop"
		{"Tell me something about queues", "queue"},
		{"GARDENS", "garden"},
	}
	for _, c := range cases {
		for seed := int64(1); seed <= 10; seed++ {
			r := localGenerate(t, p, Request{Prompt: c.prompt, Seed: Int(seed)})
			if !strings.Contains(strings.ToLower(r.Text), c.want) {
				t.Errorf("%q seed %d: reply lacks %q: %q", c.prompt, seed, c.want, r.Text)
			}
		}
	}
	// A chat is about its last user message.
	chat := []Message{
		{Role: "system", Content: "You are helpful."},
		{Role: "user", Content: "Tell me about bridges."},
		{Role: "assistant", Content: "A bridge is a promise."},
		{Role: "user", Content: "And the tides?"},
	}
	r := localGenerate(t, p, Request{Messages: chat, Seed: Int(1)})
	if !strings.Contains(strings.ToLower(r.Text), "tide") {
		t.Errorf("chat reply lacks %q: %q", "tide", r.Text)
	}
}

func TestLocalMaxTokens(t *testing.T) {
	p := NewLocal(LocalOptions{})
	lengths := 0
	for seed := int64(1); seed <= 100; seed++ {
		req := Request{Prompt: "Tell me about the sea", MaxTokens: 7, Seed: Int(seed)}
		chunks, done := localStream(t, p, req)
		n := done.Usage.CompletionTokens
		if n > 7 || n != len(chunks) {
			t.Fatalf("seed %d: %d tokens, %d chunks, want at most 7", seed, n, len(chunks))
		}
		if done.FinishReason == "length" {
			lengths++
			if n != 7 {
				t.Errorf("seed %d: finish length after %d tokens, want 7", seed, n)
			}
		}
	}
	if lengths == 0 {
		t.Error(`no reply of 7 tokens finished with "length"`)
	}
}

func TestLocalDefaultMaxTokens(t *testing.T) {
	for _, c := range []struct{ opts, req, want int }{{0, 0, 120}, {15, 0, 15}, {15, 30, 30}} {
		p := NewLocal(LocalOptions{MaxTokens: c.opts})
		for seed := int64(1); seed <= 20; seed++ {
			r := localGenerate(t, p, Request{MaxTokens: c.req, Seed: Int(seed), Temperature: Float(0.2)})
			if n := r.Usage.CompletionTokens; n > c.want || r.FinishReason == "length" && n != c.want {
				t.Errorf("%+v seed %d: %d tokens (%s), want at most %d", c, seed, n, r.FinishReason, c.want)
			}
		}
	}
}

func TestLocalNaturalStop(t *testing.T) {
	p := NewLocal(LocalOptions{})
	for seed := int64(1); seed <= 30; seed++ {
		r := localGenerate(t, p, Request{Prompt: "Tell me about the moon", Seed: Int(seed)})
		n := r.Usage.CompletionTokens
		if r.FinishReason != "stop" || n < 48 || n > 120 {
			t.Errorf("seed %d: finish %q after %d tokens, want a natural stop after 48 to 120", seed, r.FinishReason, n)
		}
		if !strings.ContainsAny(r.Text[len(r.Text)-1:], ".?!") {
			t.Errorf("seed %d: natural end is not a sentence end: %q", seed, r.Text)
		}
	}
}

func TestLocalStopSequences(t *testing.T) {
	p := NewLocal(LocalOptions{})
	base := Request{Prompt: "Describe the harbour", Seed: Int(3), MaxTokens: 100}
	full := localGenerate(t, p, base).Text
	words := strings.Fields(full)
	mid := len(full) / 2
	stops := [][]string{
		{" " + words[len(words)/2]},      // a whole word
		{full[mid : mid+9]},              // bytes across tokens
		{"zzzz", full[mid+3 : mid+6]},    // one of several
		{words[0]},                       // at the very start
		{full[len(full)-1:] + "nowhere"}, // a prefix of it at the end only
		{"q"},                            // a one-byte stop
	}
	for _, stop := range stops {
		req := base
		req.Stop = stop
		want, wantFinish := full, "" // no stop found: the unstopped reply
		at := -1
		for _, s := range stop {
			if i := strings.Index(full, s); i >= 0 && (at < 0 || i < at) {
				at = i
			}
		}
		if at >= 0 {
			want, wantFinish = full[:at], "stop"
		}
		r := localGenerate(t, p, req)
		if r.Text != want || wantFinish != "" && r.FinishReason != wantFinish {
			t.Errorf("stop %q: got %q (%s), want %q (%s)", stop, r.Text, r.FinishReason, want, wantFinish)
		}
		chunks, done := localStream(t, p, req)
		if got := strings.Join(chunks, ""); got != r.Text || done.FinishReason != r.FinishReason {
			t.Errorf("stop %q: stream gave %q (%s), Generate %q (%s)", stop, got, done.FinishReason, r.Text, r.FinishReason)
		}
		for _, c := range chunks {
			if c == "" {
				t.Errorf("stop %q: empty content chunk", stop)
			}
		}
	}
}

func TestLocalStreamMatchesGenerate(t *testing.T) {
	p := NewLocal(LocalOptions{Seed: 9})
	for _, prompt := range localTestPrompts {
		req := Request{Prompt: prompt, MaxTokens: 60}
		chunks, done := localStream(t, p, req)
		r := localGenerate(t, p, req)
		if got := strings.Join(chunks, ""); got != r.Text {
			t.Errorf("prompt %q: stream %q != Generate %q", prompt, got, r.Text)
		}
		if done.FinishReason != r.FinishReason || *done.Usage != r.Usage || done.Content != "" {
			t.Errorf("prompt %q: final chunk %+v, Generate %+v", prompt, done, r)
		}
		if strings.HasPrefix(chunks[0], " ") {
			t.Errorf("prompt %q: first token %q has a leading space", prompt, chunks[0])
		}
		for _, c := range chunks[1:] {
			if r := []rune(c)[0]; unicode.IsLetter(r) || unicode.IsDigit(r) {
				t.Errorf("prompt %q: word token %q without a leading space", prompt, c)
			}
		}
	}
}

func TestLocalUsageAndModel(t *testing.T) {
	p := NewLocal(LocalOptions{})
	r := localGenerate(t, p, Request{Prompt: "Tell me about the moon's phases, please."})
	if r.Usage.PromptTokens != 9 {
		t.Errorf("prompt tokens = %d, want 9", r.Usage.PromptTokens)
	}
	if u := r.Usage; u.CompletionTokens <= 0 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
		t.Errorf("usage %+v", u)
	}
	if r.Model != "moonbridge-local" {
		t.Errorf("model %q, want moonbridge-local", r.Model)
	}
	chat := Request{Model: "mine", Messages: []Message{{Role: "user", Content: "Hi there."}, {Role: "assistant", Content: "Hello!"}}}
	r = localGenerate(t, p, chat)
	if r.Usage.PromptTokens != 5 || r.Model != "mine" {
		t.Errorf("chat: prompt tokens %d, model %q; want 5, mine", r.Usage.PromptTokens, r.Model)
	}
}

// The generator relies on every paragraph ending a sentence, so that a
// paragraph break never ends a reply mid-sentence.
func TestLocalCorpusParagraphsEndSentences(t *testing.T) {
	m := localCorpusModel()
	for p := 1; p < len(m.seq); p++ {
		if m.kind[m.seq[p]] == ngramPara && m.kind[m.seq[p-1]] != ngramEnd {
			t.Errorf("paragraph ends with %q at corpus token %d", m.spaced[m.seq[p-1]], p)
		}
	}
	if n := len(m.spaced); n < 1000 {
		t.Errorf("corpus has only %d distinct tokens", n)
	}
}

func TestLocalTokenCount(t *testing.T) {
	for s, want := range map[string]int{
		"":                        0,
		"  ":                      0,
		"moon":                    1,
		"The moon's cable-stayed": 3,
		"Well -- it's fine!":      6,
		"naïve café, 42.":         5,
		"end-":                    2,
	} {
		if got := localTokenCount(s); !reflect.DeepEqual(got, want) {
			t.Errorf("localTokenCount(%q) = %d, want %d", s, got, want)
		}
	}
}

func TestLocalTemperature(t *testing.T) {
	p := NewLocal(LocalOptions{})
	// With no topic word, greedy decoding ignores the seed.
	a := localGenerate(t, p, Request{Prompt: "hello", Seed: Int(1), Temperature: Float(0)})
	b := localGenerate(t, p, Request{Prompt: "hello", Seed: Int(2), Temperature: Float(0)})
	if a.Text != b.Text {
		t.Errorf("greedy replies differ:\n%q\n%q", a.Text, b.Text)
	}
	hot := localGenerate(t, p, Request{Prompt: "hello", Seed: Int(1), Temperature: Float(1.5)})
	cold := localGenerate(t, p, Request{Prompt: "hello", Seed: Int(1), Temperature: Float(0.5)})
	if hot.Text == a.Text || cold.Text == hot.Text {
		t.Errorf("temperature has no effect: %q %q %q", a.Text, cold.Text, hot.Text)
	}
}

func TestLocalTokenDelay(t *testing.T) {
	const delay = 20 * time.Millisecond
	p := NewLocal(LocalOptions{TokenDelay: delay})
	start := time.Now()
	r := localGenerate(t, p, Request{Prompt: "moon", MaxTokens: 5})
	elapsed := time.Since(start)
	n := r.Usage.CompletionTokens
	if min := time.Duration(n) * delay * 4 / 5; n == 0 || elapsed < min {
		t.Errorf("%d tokens took %v, want at least %v", n, elapsed, min)
	}
}

func TestLocalCancel(t *testing.T) {
	t.Run("during a long delay", func(t *testing.T) {
		p := NewLocal(LocalOptions{TokenDelay: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(10*time.Millisecond, cancel)
		err := p.Stream(ctx, Request{Prompt: "moon"}, func(c Chunk) error {
			t.Errorf("unexpected chunk %+v", c)
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("mid-stream", func(t *testing.T) {
		p := NewLocal(LocalOptions{TokenDelay: time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var got []Chunk
		err := p.Stream(ctx, Request{Prompt: "moon", MaxTokens: 50}, func(c Chunk) error {
			if got = append(got, c); len(got) == 3 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) || len(got) != 3 || got[2].Done {
			t.Errorf("err = %v after %d chunks, want context.Canceled after 3", err, len(got))
		}
	})
	t.Run("before the start", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r, err := NewLocal(LocalOptions{}).Generate(ctx, Request{Prompt: "moon"})
		if !errors.Is(err, context.Canceled) || r.Text != "" {
			t.Errorf("Generate = %q, %v; want context.Canceled", r.Text, err)
		}
	})
}

func TestLocalCallbackError(t *testing.T) {
	errStop := errors.New("enough")
	for _, stop := range [][]string{nil, {"zz"}} {
		calls := 0
		err := NewLocal(LocalOptions{}).Stream(context.Background(), Request{Prompt: "moon", Stop: stop}, func(Chunk) error {
			if calls++; calls == 2 {
				return errStop
			}
			return nil
		})
		if !errors.Is(err, errStop) || calls != 2 {
			t.Errorf("stop %q: err = %v after %d calls, want %v after 2", stop, err, calls, errStop)
		}
	}
}

func TestLocalConcurrent(t *testing.T) {
	p := NewLocal(LocalOptions{Seed: 4})
	reqs := make([]Request, 0, 24)
	for i, prompt := range localTestPrompts {
		for seed := int64(0); seed < 4; seed++ {
			reqs = append(reqs, Request{Prompt: prompt, Seed: Int(seed + int64(i)), Stop: []string{"zq"}})
		}
	}
	want := make([]Response, len(reqs))
	for i, req := range reqs {
		want[i] = localGenerate(t, p, req)
	}
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range reqs {
				j := (i + g) % len(reqs)
				r, err := p.Generate(context.Background(), reqs[j])
				if err != nil || !reflect.DeepEqual(r, want[j]) {
					t.Errorf("goroutine %d, request %d: %+v, %v; want %+v", g, j, r, err, want[j])
				}
			}
		}()
	}
	wg.Wait()
}

func TestLocalZeroValues(t *testing.T) {
	r := localGenerate(t, NewLocal(LocalOptions{}), Request{})
	if r.Text == "" || r.FinishReason == "" || r.Usage.PromptTokens != 0 {
		t.Errorf("empty request gave %+v", r)
	}
}

func TestLocalStreamAllocs(t *testing.T) {
	p := NewLocal(LocalOptions{})
	run := func(max int) float64 {
		req := Request{Prompt: "Tell me about the moon", MaxTokens: max, Temperature: Float(0.2)}
		return testing.AllocsPerRun(20, func() {
			var n int
			p.Stream(context.Background(), req, func(c Chunk) error { n++; return nil })
		})
	}
	short, long := run(5), run(5000)
	if long > short+1 {
		t.Errorf("a 5000-token reply made %v allocations, a 5-token one %v: tokens allocate", long, short)
	}
}

func BenchmarkLocalStream(b *testing.B) {
	p := NewLocal(LocalOptions{})
	req := Request{Prompt: "Tell me about the moon and the tides", MaxTokens: 256}
	tokens := 0
	count := func(c Chunk) error {
		if !c.Done {
			tokens++
		}
		return nil
	}
	localCorpusModel()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		req.Seed = Int(int64(i))
		if err := p.Stream(context.Background(), req, count); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric(float64(tokens)/float64(b.N), "tokens/op")
}

// TestLocalRepliesAreBounded: the local generator fits strings and arrays
// to a schema's lengths, but a schema asking for a gigabyte (a script's
// minLength or minItems of 1e9, arrays of arrays) gets a reply cut short,
// which the schema's check then refuses, not the host allocating without
// end or padding a byte at a time.
func TestLocalRepliesAreBounded(t *testing.T) {
	for _, c := range []struct {
		in     string
		schema map[string]any
		want   string
	}{
		{"ab", map[string]any{"minLength": 5.0}, "abxxx"},
		{"é", map[string]any{"minLength": 3.0}, "éxx"},
		{"héllo", map[string]any{"maxLength": 2.0}, "hé"},
		{"héllo", map[string]any{"maxLength": -1.0}, ""},
	} {
		if got := localString(c.in, c.schema); got != c.want {
			t.Errorf("localString(%q, %v) = %q, want %q", c.in, c.schema, got, c.want)
		}
	}
	if got := localString("ab", map[string]any{"minLength": 1e9}); utf8.RuneCountInString(got) != localMaxString {
		t.Errorf("minLength 1e9 made %d runes, want %d", utf8.RuneCountInString(got), localMaxString)
	}
	inner := map[string]any{"type": "array", "minItems": 1e9}
	schema := map[string]any{"type": "array", "minItems": 1e9, "items": inner}
	var count func(v any) int
	count = func(v any) int {
		n := 1
		if a, ok := v.([]any); ok {
			n += len(a)
			for _, e := range a {
				n += count(e)
			}
		}
		return n
	}
	if n := count(newLocalWords("x", nil).value(schema, schema, "", 0)); n > 2*localMaxValues {
		t.Errorf("arrays of 1e9 arrays made %d values and slots, want at most %d", n, 2*localMaxValues)
	}
}
