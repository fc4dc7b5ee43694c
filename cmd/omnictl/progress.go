package main

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progress shows what a command waits for on stderr: a spinner line redrawn in place on a
// terminal, or a plain line for each change of the message otherwise.
type progress struct {
	w    io.Writer
	tty  bool
	stop chan struct{}
	done chan struct{}

	mu    sync.Mutex
	msg   string
	frame int
	shown bool
}

var spinnerFrames = []rune("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")

// newProgress starts a progress display on w.
func newProgress(w io.Writer, tty bool) *progress {
	p := &progress{w: w, tty: tty, stop: make(chan struct{}), done: make(chan struct{})}
	if !tty {
		close(p.done)
		return p
	}
	go func() {
		defer close(p.done)
		t := time.NewTicker(120 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.mu.Lock()
				p.frame++
				p.draw()
				p.mu.Unlock()
			}
		}
	}()
	return p
}

// set changes the message.
func (p *progress) set(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if msg == p.msg {
		return
	}
	p.msg = msg
	if p.tty {
		p.draw()
		return
	}
	fmt.Fprintln(p.w, msg)
}

// draw redraws the spinner line (p.mu held).
func (p *progress) draw() {
	if p.msg == "" {
		return
	}
	fmt.Fprintf(p.w, "\r\033[K%c %s", spinnerFrames[p.frame%len(spinnerFrames)], p.msg)
	p.shown = true
}

// close stops the display and clears the spinner line.
func (p *progress) close() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
