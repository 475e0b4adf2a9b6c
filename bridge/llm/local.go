// LLM providers: the embedded local generator, a word-level trigram model
// (with bigram and unigram backoff) built from prose embedded in the binary.
// It needs no network or model files, is deterministic for a given seed and
// request, and is fast enough to drive throughput benchmarks, which is why
// it is moonbridge's default provider.

package llm

import (
	"bytes"
	"context"
	"embed"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// LocalModel is the model name the local generator reports when the
// request names none.
const LocalModel = "moonbridge-local"

// localDefaultMaxTokens is the reply length bound when neither the request
// nor the options give one.
const localDefaultMaxTokens = 120

// LocalOptions configures a Local generator. The zero value is ready to use.
type LocalOptions struct {
	// Seed is the seed used when Request.Seed is nil.
	Seed int64
	// TokenDelay is a pause before each streamed token, to imitate a real
	// server; 0 streams as fast as possible.
	TokenDelay time.Duration
	// MaxTokens is the default when Request.MaxTokens is 0; 0 means 120.
	MaxTokens int
}

// Local is the embedded local generator. It is safe for concurrent use.
type Local struct {
	opts LocalOptions
}

var _ Provider = (*Local)(nil)

// NewLocal returns a local generator. The language model is built once per
// process, on first use.
func NewLocal(opts LocalOptions) *Local {
	return &Local{opts: opts}
}

// Generate returns the whole reply. Like a real server it waits for every
// token, so it takes TokenDelay times the reply's length.
func (l *Local) Generate(ctx context.Context, req Request) (Response, error) {
	r, err := Collect(ctx, l, req)
	r.Model = localModelName(req)
	return r, err
}

// Stream calls fn with each token of the reply (a word with its leading
// space, or a punctuation mark), then once with Done set, the finish reason
// and the usage.
//
// Offered Tools, it calls those whose name and description best match the
// last user message (several when several do), with arguments that match
// their schemas, drawn from the message's words and numbers; the last
// chunk carries the calls. After tool results (a last message of role
// "tool") it answers with them. Given a Schema, it writes JSON that
// matches it. All of it is deterministic.
func (l *Local) Stream(ctx context.Context, req Request, fn func(Chunk) error) error {
	if plan, ok := localStructured(req); ok {
		return l.runPlan(ctx, req, plan, fn)
	}
	g := newLocalGen(localCorpusModel(), l.opts, req)
	return g.run(ctx, fn)
}

func localModelName(req Request) string {
	if req.Model != "" {
		return req.Model
	}
	return LocalModel
}

// ---- generation ----

// localSampling is how successors are chosen.
type localSampling uint8

const (
	localSampleCounts localSampling = iota // in proportion to corpus counts (T=1)
	localSampleGreedy                      // the most frequent successor (T=0)
	localSampleTemp                        // counts reshaped by 1/T
)

// localGen is the state of one reply.
type localGen struct {
	m        *ngramModel
	rng      rand.PCG
	sampling localSampling
	invTemp  float64

	forced []int32 // corpus tokens to emit before sampling (prompt topic)
	prev   int32   // the last token
	ctx3   int32   // trigram context index ending in prev, or -1

	max, natural, paraEnd int // length bounds (see newLocalGen)
	n                     int // tokens generated
	started, capNext      bool

	delay  time.Duration
	stop   localStopper
	prompt int // prompt tokens, for Usage
}

func newLocalGen(m *ngramModel, opts LocalOptions, req Request) *localGen {
	conv := localConversation(req)
	g := &localGen{m: m, delay: opts.TokenDelay, capNext: true}
	g.max = req.MaxTokens
	if g.max <= 0 {
		g.max = opts.MaxTokens
	}
	if g.max <= 0 {
		g.max = localDefaultMaxTokens
	}
	// A reply may end at a sentence end once it has 60% of its budget, or
	// at a paragraph end from 40%: long enough to say something, and most
	// replies then finish a sentence instead of being cut off.
	g.natural = (g.max*3 + 4) / 5
	g.paraEnd = (g.max*2 + 4) / 5
	g.setSampling(req.Temperature)

	seed := opts.Seed
	if req.Seed != nil {
		seed = *req.Seed
	}
	g.rng.Seed(uint64(seed), localHash(conv))
	g.prompt = localCountTokens(conv)
	g.stop.init(req.Stop)
	g.start(localTopicText(conv))
	return g
}

func (g *localGen) setSampling(t *float64) {
	switch {
	case t == nil || math.IsNaN(*t) || *t == 1:
		g.sampling = localSampleCounts
	case *t <= 0:
		g.sampling = localSampleGreedy
	default:
		g.sampling = localSampleTemp
		g.invTemp = 1 / *t
	}
}

// start positions the reply: at the start of a corpus sentence that
// mentions the prompt's topic, or else at the start of a paragraph.
func (g *localGen) start(topic string) {
	if id, ok := g.m.topicWord(topic); ok {
		occ := g.m.occurrences[id]
		p := occ[g.intn(len(occ))]
		g.forced = g.m.seq[g.m.sentStart[p] : p+1]
		g.prev, g.ctx3 = g.m.seq[p], g.m.trigramAt(p-1)
		return
	}
	g.prev, g.ctx3 = g.m.seq[1], g.m.trigramAt(0)
}

func (g *localGen) intn(n int) int {
	hi, _ := bits.Mul64(g.rng.Uint64(), uint64(n))
	return int(hi)
}

// run generates and streams the reply.
func (g *localGen) run(ctx context.Context, fn func(Chunk) error) error {
	w := localWaiter{done: ctx.Done(), delay: g.delay}
	defer w.close()
	finish := ""
	for finish == "" {
		id, end := g.next()
		if end {
			finish = "stop"
			break
		}
		if !w.wait() {
			return ctx.Err()
		}
		g.n++
		stopped, err := g.stop.push(g.render(id), fn)
		if err != nil {
			return err
		}
		finish = g.finishReason(id, stopped)
	}
	if err := g.stop.flush(fn); err != nil {
		return err
	}
	u := &Usage{PromptTokens: g.prompt, CompletionTokens: g.n, TotalTokens: g.prompt + g.n}
	return fn(Chunk{Done: true, FinishReason: finish, Usage: u})
}

// finishReason says whether the reply ends after token id, and why.
func (g *localGen) finishReason(id int32, stopped bool) string {
	switch {
	case stopped:
		return "stop"
	case g.m.kind[id] == ngramEnd && g.n >= g.natural:
		return "stop"
	case g.n >= g.max:
		return "length"
	}
	return ""
}

// next returns the next token to emit, or end when the reply ends at a
// paragraph break. Paragraph breaks are not emitted: before paraEnd they
// only make the next word start a sentence.
func (g *localGen) next() (id int32, end bool) {
	if len(g.forced) > 0 {
		id, g.forced = g.forced[0], g.forced[1:]
		return id, false
	}
	for {
		id = g.sample()
		if g.m.kind[id] != ngramPara {
			return id, false
		}
		if g.n >= g.paraEnd {
			return id, true
		}
		g.capNext = true // a paragraph always follows a sentence end
	}
}

// sample draws a successor of the current context and advances to it,
// backing off from trigram to bigram to unigram statistics.
func (g *localGen) sample() int32 {
	t := &g.m.unigram
	switch {
	case g.ctx3 >= 0:
		t = &g.m.trigrams[g.ctx3]
	case g.m.bigrams[g.prev].hi > g.m.bigrams[g.prev].lo:
		t = &g.m.bigrams[g.prev]
	}
	s := g.m.succ[t.lo+g.pick(t)]
	g.prev, g.ctx3 = s.id, s.next
	return s.id
}

// pick returns the index within t of the chosen successor.
func (g *localGen) pick(t *ngramTable) int32 {
	succ := g.m.succ[t.lo:t.hi]
	switch g.sampling {
	case localSampleGreedy:
		return 0 // successors are sorted most frequent first
	case localSampleTemp:
		return ngramPickTemp(succ, g.invTemp, g.rng.Uint64())
	}
	hi, _ := bits.Mul64(g.rng.Uint64(), uint64(succ[len(succ)-1].cum))
	return ngramSearch(succ, uint32(hi))
}

// ngramSearch returns the first successor whose running total exceeds r.
func ngramSearch(succ []ngramSucc, r uint32) int32 {
	lo, hi := 0, len(succ)-1
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if succ[mid].cum <= r {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return int32(lo)
}

// ngramPickTemp samples with weights count^(1/T), without allocating. Counts are
// divided by the largest first so that small temperatures cannot overflow.
func ngramPickTemp(succ []ngramSucc, invT float64, u uint64) int32 {
	top := float64(succ[0].cum) // sorted, so the first count is the largest
	sum, prev := 0.0, uint32(0)
	for _, s := range succ {
		sum += math.Pow(float64(s.cum-prev)/top, invT)
		prev = s.cum
	}
	r := float64(u>>11) / (1 << 53) * sum
	prev = 0
	for i, s := range succ {
		r -= math.Pow(float64(s.cum-prev)/top, invT)
		prev = s.cum
		if r < 0 {
			return int32(i)
		}
	}
	return int32(len(succ) - 1)
}

// render returns token id as streamed text: a word with its leading space
// (none for the reply's first token), capitalised at a sentence start.
func (g *localGen) render(id int32) string {
	m := g.m
	var s string
	switch {
	case !g.started:
		s = m.capBare[id]
	case g.capNext:
		s = m.capSpaced[id]
	default:
		s = m.spaced[id]
	}
	g.started = true
	if m.kind[id] == ngramWord {
		g.capNext = false
	} else if m.kind[id] == ngramEnd {
		g.capNext = true
	}
	return s
}

// localWaiter sleeps the token delay, waking at once when ctx is done.
type localWaiter struct {
	done  <-chan struct{}
	delay time.Duration
	timer *time.Timer
}

// wait reports false when the context is done.
func (w *localWaiter) wait() bool {
	if w.delay <= 0 {
		select {
		case <-w.done:
			return false
		default:
			return true
		}
	}
	if w.timer == nil {
		w.timer = time.NewTimer(w.delay)
	} else {
		w.timer.Reset(w.delay)
	}
	select {
	case <-w.done:
		return false
	case <-w.timer.C:
		return true
	}
}

func (w *localWaiter) close() {
	if w.timer != nil {
		w.timer.Stop()
	}
}

// ---- stop sequences ----

// localStopper passes tokens to fn, ending the reply at a stop sequence.
// Text that could be the start of a stop sequence is held back until it is
// known not to be, so the stream never shows any part of a stop sequence.
type localStopper struct {
	stops  [][]byte
	maxLen int
	text   []byte // reply so far (only kept when there are stop sequences)
	sent   int    // bytes of text already passed to fn
}

func (s *localStopper) init(stops []string) {
	for _, st := range stops {
		if st != "" {
			s.stops = append(s.stops, []byte(st))
			s.maxLen = max(s.maxLen, len(st))
		}
	}
}

// push adds tok to the reply and streams what is safe to show. It reports
// whether a stop sequence was found.
func (s *localStopper) push(tok string, fn func(Chunk) error) (bool, error) {
	if len(s.stops) == 0 {
		return false, fn(Chunk{Content: tok})
	}
	from := max(0, len(s.text)-s.maxLen+1)
	pending := s.sent == len(s.text)
	s.text = append(s.text, tok...)
	if at := s.find(from); at >= 0 {
		s.text = s.text[:at]
		return true, s.flush(fn)
	}
	safe := len(s.text) - s.heldBack()
	if pending && safe == len(s.text) {
		s.sent = safe
		return false, fn(Chunk{Content: tok}) // common case: no copy
	}
	return false, s.emit(safe, fn)
}

// find returns where the earliest stop sequence starts in text, searching
// from byte from, or -1.
func (s *localStopper) find(from int) int {
	at := -1
	for _, st := range s.stops {
		if i := bytes.Index(s.text[from:], st); i >= 0 && (at < 0 || from+i < at) {
			at = from + i
		}
	}
	return at
}

// heldBack returns the length of the longest end of text that is a proper
// prefix of a stop sequence.
func (s *localStopper) heldBack() int {
	held := 0
	for _, st := range s.stops {
		for k := min(len(st)-1, len(s.text)); k > held; k-- {
			if bytes.HasSuffix(s.text, st[:k]) {
				held = k
				break
			}
		}
	}
	return held
}

func (s *localStopper) emit(upto int, fn func(Chunk) error) error {
	if upto <= s.sent {
		return nil
	}
	chunk := string(s.text[s.sent:upto])
	s.sent = upto
	return fn(Chunk{Content: chunk})
}

// flush streams whatever was held back.
func (s *localStopper) flush(fn func(Chunk) error) error {
	return s.emit(len(s.text), fn)
}

// ---- prompts ----

// localConversation returns the request's messages, with Prompt as a final
// user message.
func localConversation(req Request) []Message {
	if req.Prompt == "" {
		return req.Messages
	}
	if len(req.Messages) == 0 {
		return []Message{{Role: "user", Content: req.Prompt}}
	}
	return append(slices.Clip(req.Messages), Message{Role: "user", Content: req.Prompt})
}

// localTopicText is what the reply is about: the last user message, or the
// last message when no user spoke.
func localTopicText(conv []Message) string {
	for i := len(conv) - 1; i >= 0; i-- {
		if conv[i].Role == "user" {
			return conv[i].Content
		}
	}
	if len(conv) > 0 {
		return conv[len(conv)-1].Content
	}
	return ""
}

// localHash is FNV-1a over the conversation, so that different prompts
// give different replies for one seed.
func localHash(conv []Message) uint64 {
	h := uint64(14695981039346656037)
	add := func(s string) {
		for i := 0; i < len(s); i++ {
			h = (h ^ uint64(s[i])) * 1099511628211
		}
		h = (h ^ 0xff) * 1099511628211 // separator: no byte of UTF-8 text
	}
	for _, m := range conv {
		add(m.Role)
		add(m.Content)
	}
	return h
}

// localCountTokens counts the conversation's tokens with the generator's
// tokenizer.
func localCountTokens(conv []Message) int {
	n := 0
	for _, m := range conv {
		n += localTokenCount(m.Content)
	}
	return n
}

func localTokenCount(s string) int {
	n := 0
	for tok, _, i := localNextToken(s, 0); tok != ""; tok, _, i = localNextToken(s, i) {
		n++
	}
	return n
}

// localStopWords are prompt words too common to choose a topic by, and the
// words of instructions ("write a line about", "summarise").
var localStopWords = localWordSet(`a about all also am an and any anything are as
at be but by can could describe did do does essay explain few for from get give
has have he her him his how i if in into is it its just know let like line lines
list long make me more my name need no not now of on one or our out paragraph
please poem say sentence short she should show so some something story
summarise summarize summary tell than thank thanks that the their them then
there these they thing things this those three to two up us very want was we
were what when where which who why will with word words would write yes you
your`)

func localWordSet(words string) map[string]bool {
	set := map[string]bool{}
	for _, w := range strings.Fields(words) {
		set[w] = true
	}
	return set
}

// ---- tokenizer ----

// localNextToken returns the token starting at or after byte i of s and the
// index after it; tok is "" at the end. A token is a word (letters and
// digits, with inner apostrophes and hyphens) or one other non-space rune.
func localNextToken(s string, i int) (tok string, word bool, next int) {
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsSpace(r) {
			break
		}
		i += n
	}
	if i >= len(s) {
		return "", false, i
	}
	start := i
	r, n := utf8.DecodeRuneInString(s[i:])
	if !localWordRune(r) {
		return s[i : i+n], false, i + n
	}
	for i += n; i < len(s); {
		r, n = utf8.DecodeRuneInString(s[i:])
		if localWordRune(r) {
			i += n
			continue
		}
		// An apostrophe or hyphen joins two words: "earth's", "cable-stayed".
		if r == '\'' || r == '-' {
			if r2, _ := utf8.DecodeRuneInString(s[i+n:]); localWordRune(r2) {
				i += n
				continue
			}
		}
		break
	}
	return s[start:i], true, i
}

func localWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

// ---- the model ----

//go:embed corpus/*.txt
var localCorpusFS embed.FS

var (
	localNgramOnce sync.Once
	localNgram     *ngramModel
)

// localCorpusModel returns the model built from the embedded corpus.
func localCorpusModel() *ngramModel {
	localNgramOnce.Do(func() {
		localNgram = buildNgramModel(readLocalCorpus())
	})
	return localNgram
}

func readLocalCorpus() []string {
	entries, err := localCorpusFS.ReadDir("corpus") // sorted by name
	if err != nil {
		panic("llm: embedded corpus: " + err.Error())
	}
	var texts []string
	for _, e := range entries {
		b, err := localCorpusFS.ReadFile("corpus/" + e.Name())
		if err != nil {
			panic("llm: embedded corpus: " + err.Error())
		}
		texts = append(texts, string(b))
	}
	return texts
}

// Token kinds.
const (
	ngramWord  uint8 = iota
	ngramPunct       // , ; : and the like
	ngramEnd         // . ? !
	ngramPara        // paragraph break, never emitted
)

// ngramSucc is one successor in a table: the token, the running total of
// counts up to and including it, and the trigram context that follows.
type ngramSucc struct {
	id   int32
	cum  uint32
	next int32 // index into trigrams of (context's last token, id), or -1
}

// ngramTable is a context's successors: succ[lo:hi], most frequent first.
type ngramTable struct{ lo, hi int32 }

// ngramModel is the immutable language model shared by all generators.
type ngramModel struct {
	// Per token id.
	spaced, capSpaced, capBare []string // precomputed renderings
	kind                       []uint8
	counts                     []int32
	occurrences                [][]int32 // positions in seq
	bigrams                    []ngramTable

	lookup map[string]int32 // lowercased word → most frequent id

	seq       []int32 // the corpus as tokens, paragraphs separated by ngramPara
	sentStart []int32 // per position, where its sentence starts

	succ       []ngramSucc
	trigrams   []ngramTable
	trigramIdx map[uint64]int32
	unigram    ngramTable
}

func ngramKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// trigramAt returns the trigram context (seq[p], seq[p+1]), or -1.
func (m *ngramModel) trigramAt(p int32) int32 {
	if i, ok := m.trigramIdx[ngramKey(m.seq[p], m.seq[p+1])]; ok {
		return i
	}
	return -1
}

// topicWord returns the rarest (then longest) prompt word found in the
// corpus, skipping stop words.
func (m *ngramModel) topicWord(prompt string) (int32, bool) {
	best, bestWord := int32(-1), ""
	for i := 0; ; {
		tok, word, next := localNextToken(prompt, i)
		if tok == "" {
			break
		}
		i = next
		w := strings.ToLower(tok)
		if !word || localStopWords[w] {
			continue
		}
		id, ok := m.wordID(w)
		if !ok {
			continue
		}
		if best < 0 || m.rarer(id, w, best, bestWord) {
			best, bestWord = id, w
		}
	}
	return best, best >= 0
}

// wordID looks up a lowercased word, or its singular: "queues" finds
// "queue" when only that is in the corpus.
func (m *ngramModel) wordID(w string) (int32, bool) {
	if id, ok := m.lookup[w]; ok {
		return id, true
	}
	if s, ok := strings.CutSuffix(w, "s"); ok && s != "" {
		id, ok := m.lookup[s]
		return id, ok
	}
	return 0, false
}

// rarer orders topic candidates: fewer occurrences, then longer, then
// alphabetical, so the choice does not depend on word order.
func (m *ngramModel) rarer(id int32, w string, than int32, thanWord string) bool {
	if m.counts[id] != m.counts[than] {
		return m.counts[id] < m.counts[than]
	}
	if len(w) != len(thanWord) {
		return len(w) > len(thanWord)
	}
	return w < thanWord
}

// buildNgramModel tokenizes the texts and counts their n-grams.
func buildNgramModel(texts []string) *ngramModel {
	b := newNgramBuilder()
	b.tokenize(texts)
	m := b.m
	m.sentStart = ngramSentenceStarts(m.seq, m.kind)
	m.occurrences = make([][]int32, len(m.kind))
	for p, id := range m.seq {
		m.counts[id]++
		m.occurrences[id] = append(m.occurrences[id], int32(p))
	}
	b.renderings()
	b.tables()
	return m
}

// ngramBuilder holds scratch state while a model is built.
type ngramBuilder struct {
	m     *ngramModel
	ids   map[string]int32
	forms []string // per id, the word as written mid-sentence
}

func newNgramBuilder() *ngramBuilder {
	return &ngramBuilder{
		m:   &ngramModel{lookup: map[string]int32{}, trigramIdx: map[uint64]int32{}},
		ids: map[string]int32{},
	}
}

// intern returns the id of form, adding it if new.
func (b *ngramBuilder) intern(form string, kind uint8) int32 {
	if id, ok := b.ids[form]; ok {
		return id
	}
	id := int32(len(b.forms))
	b.ids[form] = id
	b.forms = append(b.forms, form)
	b.m.kind = append(b.m.kind, kind)
	b.m.counts = append(b.m.counts, 0)
	return id
}

// tokenize turns the texts into seq. A word keeps its case, except that a
// sentence's first word is lowercased unless only its capitalised form
// occurs mid-sentence, so "The" and "the" are one token while names stay
// capitalised. seq starts with ". ¶" so every position has a predecessor
// pair, and each paragraph ends with ¶.
func (b *ngramBuilder) tokenize(texts []string) {
	raw, mid := ngramScan(texts)
	m := b.m
	m.seq = append(m.seq, b.intern(".", ngramEnd), b.intern("\n", ngramPara))
	for _, t := range raw {
		m.seq = append(m.seq, b.intern(ngramForm(t.s, t.word, t.initial, mid), ngramKind(t.s, t.word)))
	}
}

// ngramRaw is a corpus token as written.
type ngramRaw struct {
	s       string // "\n" for a paragraph break
	word    bool
	initial bool // first word of a sentence
}

// ngramScan splits the texts into tokens and paragraph breaks (blank
// lines), and collects the word forms that occur mid-sentence.
func ngramScan(texts []string) (raw []ngramRaw, mid map[string]bool) {
	mid = map[string]bool{}
	for _, text := range texts {
		for _, para := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n\n") {
			initial := true
			for tok, word, i := localNextToken(para, 0); tok != ""; tok, word, i = localNextToken(para, i) {
				raw = append(raw, ngramRaw{tok, word, initial && word})
				if word && !initial {
					mid[tok] = true
				}
				initial = localSentenceEnd(tok) || (initial && !word)
			}
			if len(raw) > 0 && raw[len(raw)-1].s != "\n" {
				raw = append(raw, ngramRaw{s: "\n"})
			}
		}
	}
	return raw, mid
}

func ngramForm(s string, word, initial bool, mid map[string]bool) string {
	if !word || !initial {
		return s
	}
	if low := strings.ToLower(s); mid[low] || !mid[s] {
		return low
	}
	return s // a name, capitalised mid-sentence too
}

func ngramKind(s string, word bool) uint8 {
	switch {
	case word:
		return ngramWord
	case s == "\n":
		return ngramPara
	case localSentenceEnd(s):
		return ngramEnd
	}
	return ngramPunct
}

func localSentenceEnd(s string) bool { return s == "." || s == "?" || s == "!" }

// ngramSentenceStarts maps each position of seq to the start of its sentence.
func ngramSentenceStarts(seq []int32, kind []uint8) []int32 {
	starts := make([]int32, len(seq))
	start := int32(0)
	for p, id := range seq {
		if kind[id] == ngramEnd || kind[id] == ngramPara {
			starts[p] = start
			start = int32(p + 1)
			continue
		}
		starts[p] = start
	}
	return starts
}

// renderings precomputes each token's streamed forms and the lowercase
// lookup used for prompt topics.
func (b *ngramBuilder) renderings() {
	m := b.m
	n := len(b.forms)
	m.spaced, m.capSpaced, m.capBare = make([]string, n), make([]string, n), make([]string, n)
	for id, f := range b.forms {
		if m.kind[id] != ngramWord {
			m.spaced[id], m.capSpaced[id], m.capBare[id] = f, f, f
			continue
		}
		c := localCapitalize(f)
		m.spaced[id], m.capSpaced[id], m.capBare[id] = " "+f, " "+c, c
		low := strings.ToLower(f)
		if old, ok := m.lookup[low]; !ok || m.counts[id] > m.counts[old] {
			m.lookup[low] = int32(id)
		}
	}
}

func localCapitalize(w string) string {
	r, n := utf8.DecodeRuneInString(w)
	return string(unicode.ToUpper(r)) + w[n:]
}

// tables counts trigrams, bigrams and unigrams into successor tables.
func (b *ngramBuilder) tables() {
	m := b.m
	seq := m.seq
	tri := map[uint64]map[int32]uint32{}
	bi := make([]map[int32]uint32, len(b.forms))
	uni := map[int32]uint32{}
	for p := range seq {
		if m.kind[seq[p]] == ngramWord {
			uni[seq[p]]++
		}
		if p+1 < len(seq) {
			if bi[seq[p]] == nil {
				bi[seq[p]] = map[int32]uint32{}
			}
			bi[seq[p]][seq[p+1]]++
		}
		if p+2 < len(seq) {
			k := ngramKey(seq[p], seq[p+1])
			if tri[k] == nil {
				tri[k] = map[int32]uint32{}
			}
			tri[k][seq[p+2]]++
		}
	}
	// Number trigram contexts first, so successors can point at them.
	keys := make([]uint64, 0, len(tri))
	for k := range tri {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		m.trigramIdx[k] = int32(i)
	}
	m.trigrams = make([]ngramTable, len(keys))
	for i, k := range keys {
		m.trigrams[i] = m.addTable(int32(k), tri[k])
	}
	m.bigrams = make([]ngramTable, len(b.forms))
	for id, counts := range bi {
		m.bigrams[id] = m.addTable(int32(id), counts)
	}
	m.unigram = m.addTable(-1, uni)
}

// addTable appends the successors of a context whose last token is last
// (-1 for the unigram table), most frequent first, ties by id.
func (m *ngramModel) addTable(last int32, counts map[int32]uint32) ngramTable {
	ids := make([]int32, 0, len(counts))
	for id := range counts {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		ci, cj := counts[ids[i]], counts[ids[j]]
		return ci > cj || ci == cj && ids[i] < ids[j]
	})
	t := ngramTable{lo: int32(len(m.succ))}
	cum := uint32(0)
	for _, id := range ids {
		cum += counts[id]
		next := int32(-1)
		if i, ok := m.trigramIdx[ngramKey(last, id)]; ok && last >= 0 {
			next = i
		}
		m.succ = append(m.succ, ngramSucc{id: id, cum: cum, next: next})
	}
	t.hi = int32(len(m.succ))
	return t
}
