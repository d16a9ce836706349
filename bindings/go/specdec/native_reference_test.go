package specdec

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestSameTokensAsNative compares the binding with the native library driven without Go: the
// specdec CLI (built by `make build`, the same engine behind the C ABI) on the fixture pair.
func TestSameTokensAsNative(t *testing.T) {
	cli := filepath.Join("..", "..", "..", "target", "release", "specdec")
	target, draft, _, ids := setup(t)
	strs := make([]string, len(ids))
	for i, id := range ids {
		strs[i] = strconv.FormatUint(uint64(id), 10)
	}
	for _, gamma := range []int{1, 4, 8} {
		out, err := exec.Command(cli, "generate", "--target", fixture("llama"), "--draft", fixture("draft"),
			"--prompt-ids", strings.Join(strs, ","), "--gamma", strconv.Itoa(gamma), "--max-new-tokens", "40",
			"--eos-ids", "", "--json").Output()
		if err != nil {
			t.Fatalf("%s: %v", cli, err)
		}
		var native struct{ Tokens []uint32 }
		if err := json.Unmarshal(out, &native); err != nil {
			t.Fatalf("CLI output %q: %v", out, err)
		}
		got, _ := generate(t, target, draft, ids, WithGamma(gamma), WithMaxNewTokens(40), WithNoEOS())
		if len(native.Tokens) != 40 || !slices.Equal(got, native.Tokens) {
			t.Fatalf("gamma %d: Go %v, native %v", gamma, got, native.Tokens)
		}
	}
}
