package queue

import (
	"sort"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// EffectiveRank is the rank (0 = highest class) job j counts with at now: its class's rank,
// one higher for each full Aging it has waited since CreatedAt, never above 0.
func (p *Policy) EffectiveRank(j *jobs.Job, now time.Time) int {
	class := p.DefaultClass
	if j.Queue != nil && j.Queue.Class != "" {
		class = j.Queue.Class
	}
	r := p.Rank(class)
	if r < 0 {
		r = p.Rank(p.DefaultClass)
	}
	if p.Aging > 0 {
		r -= int(now.Sub(j.CreatedAt) / time.Duration(p.Aging))
	}
	return max(r, 0)
}

// JobSlots is how many slots j takes: its queue record's, else its job type's.
func (p *Policy) JobSlots(j *jobs.Job) int {
	if j.Queue != nil && j.Queue.Slots > 0 {
		return j.Queue.Slots
	}
	return p.Slots(j.Task)
}

// Order returns waiting in dispatch order. running is, per service, the slots its running jobs
// hold now; it is not changed. The rule (docs/queue.md):
//
//  1. a lower effective rank (higher class, after aging) goes first;
//  2. within a rank, the next job comes from the service with the fewest slots per unit of
//     weight, counting its running jobs and the jobs already ordered before (as if they had
//     started); a tie goes to the service whose next job is older, then to the smaller name;
//  3. within a service and rank, first in first out (CreatedAt, then ID).
//
// Order is a pure function of its arguments.
func (p *Policy) Order(waiting []*jobs.Job, running map[string]int, now time.Time) []*jobs.Job {
	usage := map[string]int{}
	for s, n := range running {
		usage[s] = n
	}
	// byRank[r][service] is a FIFO of that service's jobs of effective rank r.
	byRank := map[int]map[string][]*jobs.Job{}
	var ranks []int
	for _, j := range waiting {
		r := p.EffectiveRank(j, now)
		if byRank[r] == nil {
			byRank[r] = map[string][]*jobs.Job{}
			ranks = append(ranks, r)
		}
		byRank[r][j.Service] = append(byRank[r][j.Service], j)
	}
	sort.Ints(ranks)
	out := make([]*jobs.Job, 0, len(waiting))
	for _, r := range ranks {
		queues := byRank[r]
		services := make([]string, 0, len(queues))
		for s, q := range queues {
			sort.Slice(q, func(a, b int) bool { return older(q[a], q[b]) })
			services = append(services, s)
		}
		sort.Strings(services)
		for {
			best := ""
			for _, s := range services {
				if len(queues[s]) == 0 {
					continue
				}
				if best == "" || p.before(s, best, usage, queues) {
					best = s
				}
			}
			if best == "" {
				break
			}
			j := queues[best][0]
			queues[best] = queues[best][1:]
			usage[best] += p.JobSlots(j)
			out = append(out, j)
		}
	}
	return out
}

// before reports whether service a's next job goes before service b's: fewer slots per weight
// (compared exactly, as usage[a]*weight[b] < usage[b]*weight[a]), then the older next job.
func (p *Policy) before(a, b string, usage map[string]int, queues map[string][]*jobs.Job) bool {
	ua, ub := usage[a]*p.Weight(b), usage[b]*p.Weight(a)
	if ua != ub {
		return ua < ub
	}
	ja, jb := queues[a][0], queues[b][0]
	if !ja.CreatedAt.Equal(jb.CreatedAt) {
		return ja.CreatedAt.Before(jb.CreatedAt)
	}
	return a < b
}

func older(a, b *jobs.Job) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.Before(b.CreatedAt)
	}
	return a.ID < b.ID
}
