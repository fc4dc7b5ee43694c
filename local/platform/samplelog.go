package platform

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

// SampleLog returns a CRI-format container log (for Cluster.LogsFile or Options.ContainerLogs)
// of at least size bytes of text, and that text as kubectl logs shows it. The lines look like a
// build's, with what makes logs hard to carry whole: non-ASCII text, tabs, empty lines, and a
// 100 kB line every 20,011 lines (several CRI frames' worth). tag starts every ordinary line, so
// that logs made with different tags differ from their first line.
func SampleLog(size int, tag string) (cri, text []byte) {
	var c, t bytes.Buffer
	ts := time.Date(2026, 11, 27, 19, 0, 0, 0, time.UTC)
	for i := 0; t.Len() < size; i++ {
		var line string
		switch {
		case i%10007 == 5:
			line = "" // empty lines are lines too
		case i%20011 == 7:
			line = "very long line " + strings.Repeat("0123456789", 10_000)
		default:
			line = fmt.Sprintf("[%s%8d] gcc -O2 -c src/file_%d.c -o obj/file_%d.o\tünïcödé %s", tag, i, i, i, strings.Repeat("#", i%131))
		}
		fmt.Fprintf(&c, "%s stdout F %s\n", ts.Add(time.Duration(i)*time.Microsecond).Format(time.RFC3339Nano), line)
		t.WriteString(line + "\n")
	}
	return c.Bytes(), t.Bytes()
}
