package limits

import (
	"math/big"
	"strconv"
	"strings"
)

// maxInput bounds the text ParseBytes and ParseDuration look at. No size or
// duration needs more, and it bounds the work an untrusted input can cause.
const maxInput = 100

// decimal is a non-negative number exactly as written: digits × 10^exp.
// Sizes and durations are computed from it with integer arithmetic, so
// "4.35MB" is 4350000 bytes, not the 4349999 that float64 would give.
type decimal struct {
	digits string // significant digits without leading zeros; "" is zero
	exp    int
}

// maxExp saturates exponents: anything beyond is out of range either way.
const maxExp = 1 << 20

// scanDecimal reads a number from the start of s: an optional sign (if
// signed), digits with an optional fraction ("1", "1.5", ".5", "5."), and an
// optional exponent ("1e3", "2.5E-1"). It returns the rest of s after the
// number; ok is false if s does not start with a number.
func scanDecimal(s string, signed bool) (d decimal, neg bool, rest string, ok bool) {
	i := 0
	if signed && i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	start := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	intPart := s[start:i]
	var frac string
	if i < len(s) && s[i] == '.' {
		i++
		fs := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		frac = s[fs:i]
	}
	if intPart == "" && frac == "" {
		return decimal{}, false, s, false
	}
	exp := 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		// An exponent only if digits follow; else the 'e' is left for the
		// caller to reject as a unit.
		j := i + 1
		expNeg := false
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			expNeg = s[j] == '-'
			j++
		}
		if j < len(s) && isDigit(s[j]) {
			for ; j < len(s) && isDigit(s[j]); j++ {
				if exp < maxExp {
					exp = exp*10 + int(s[j]-'0')
				}
			}
			if expNeg {
				exp = -exp
			}
			i = j
		}
	}
	digits := strings.TrimLeft(intPart+frac, "0")
	return decimal{digits: digits, exp: exp - len(frac)}, neg, s[i:], true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isZero reports whether d is zero.
func (d decimal) isZero() bool { return d.digits == "" }

// times returns d × unit rounded down, and false if that exceeds int64.
// unit is positive and below 10^13.
func (d decimal) times(unit int64) (int64, bool) {
	if d.isZero() {
		return 0, true
	}
	// d is in [10^(mag-1), 10^mag).
	switch mag := len(d.digits) + d.exp; {
	case mag > 20: // d ≥ 10^20 > MaxInt64
		return 0, false
	case mag < -20: // d × unit < 10^-20 × 10^13 < 1
		return 0, true
	}
	n, _ := new(big.Int).SetString(d.digits, 10)
	n.Mul(n, big.NewInt(unit))
	if d.exp >= 0 {
		n.Mul(n, pow10(d.exp))
	} else {
		n.Quo(n, pow10(-d.exp))
	}
	if !n.IsInt64() {
		return 0, false
	}
	return n.Int64(), true
}

func pow10(n int) *big.Int {
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
}

// isNonFinite reports whether s spells NaN or infinity the way
// strconv.ParseFloat would accept it, so errors can say so plainly.
func isNonFinite(s string) bool {
	s = strings.TrimLeft(s, "+-")
	for _, w := range []string{"nan", "inf", "infinity"} {
		if strings.EqualFold(s, w) {
			return true
		}
	}
	return false
}

// quote quotes s for an error message, shortened to maxInput bytes.
func quote(s string) string {
	if len(s) > maxInput {
		return strconv.Quote(s[:maxInput]) + "..."
	}
	return strconv.Quote(s)
}
