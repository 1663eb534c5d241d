package limits_test

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sandboxd/sandboxd/internal/limits"
)

func ExampleParseBytes() {
	for _, s := range []string{"256MiB", "1.5G", "10m", "1KB", "1536 KiB", "12XB"} {
		b, err := limits.ParseBytes(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(int64(b), b)
	}
	// Output:
	// 268435456 256MiB
	// 1610612736 1536MiB
	// 10485760 10MiB
	// 1000 1KB
	// 1572864 1536KiB
	// limits: invalid size "12XB": unknown unit "XB": known are B, K or KiB, M or MiB, G or GiB, T or TiB (1024-based) and KB, MB, GB, TB (1000-based)
}

func ExampleParseDuration() {
	for _, s := range []string{"1.5s", "250ms", "2", "0.5", "-1s"} {
		d, err := limits.ParseDuration(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(d)
	}
	// Output:
	// 1.5s
	// 250ms
	// 2s
	// 500ms
	// limits: invalid duration "-1s": is negative
}

func ExampleLimits_Validate() {
	var l limits.Limits
	if err := json.Unmarshal([]byte(`{"memory": "8GiB", "pids": -1, "timeout": 30}`), &l); err != nil {
		fmt.Println(err)
		return
	}
	l = l.Merge(limits.Defaults())
	ceiling := limits.DefaultCeiling()
	err := l.Validate(ceiling)
	fmt.Println(err)
	fmt.Println(errors.Is(err, limits.ErrInvalid))
	// Output:
	// limits: memory: 8GiB is above the server's ceiling of 4GiB; pids: -1 is negative
	// true
}
