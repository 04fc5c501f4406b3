package main

import (
	"fmt"
	"html"
	"strings"
)

// Chart geometry, in SVG user units (pixels).
const (
	chartWidth   = 980
	chartLabelX  = 16  // left edge of the library names
	chartBarX    = 300 // left edge of the bars
	chartBarMax  = 540 // width of the longest bar
	chartBarH    = 18
	chartBarGap  = 6
	chartPanelT  = 30 // height of a panel's title
	chartPanelB  = 18 // space below a panel
	chartHeaderH = 64
)

// renderChart draws throughput.svg: one panel per workload, each with its
// own scale (the workloads differ by orders of magnitude), one labelled
// horizontal bar per library. A batch workload's bars are pages per second,
// which its panel's title says.
func renderChart(env environment, results [][]*result) string {
	height := chartHeaderH
	unit := "calls per second"
	for _, rs := range results {
		if len(rs) > 0 {
			height += chartPanelT + len(rs)*(chartBarH+chartBarGap) + chartPanelB
			if rs[0].Workload.Batch {
				unit = fmt.Sprintf("calls per second (%s: pages of %d keys)", rs[0].Workload.ID, env.Sizes.PageSize)
			}
		}
	}
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif">`+"\n",
		chartWidth, height, chartWidth, height)
	p(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	p(`<text x="%d" y="26" font-size="18" font-weight="bold" fill="#111">Throughput, %s, median of %d rounds; longer is better</text>`+"\n",
		chartLabelX, esc(unit), env.Rounds)
	p(`<text x="%d" y="46" font-size="12" fill="#555">%s. Each panel has its own scale.</text>`+"\n", chartLabelX, esc(env.machine()))
	y := chartHeaderH
	for _, rs := range results {
		if len(rs) == 0 {
			continue
		}
		ss := summaries(rs)
		top := 0.0
		for _, s := range ss {
			top = max(top, s.Throughput)
		}
		title, per := rs[0].Workload.Title, "ops/s"
		if rs[0].Workload.Batch {
			title += fmt.Sprintf(" (pages/s, %d keys a page)", env.Sizes.PageSize)
			per = "pages/s"
		}
		p(`<text x="%d" y="%d" font-size="15" font-weight="bold" fill="#111">%s</text>`+"\n", chartLabelX, y+20, esc(title))
		p(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#ccc"/>`+"\n", chartBarX, y+chartPanelT-4, chartBarX, y+chartPanelT+len(ss)*(chartBarH+chartBarGap)-chartBarGap+4)
		y += chartPanelT
		for _, s := range ss {
			width := 0.0
			if top > 0 {
				width = s.Throughput / top * chartBarMax
			}
			weight := "normal"
			if s.Kind.Name == nameSequential {
				weight = "bold"
			}
			p(`<text x="%d" y="%d" font-size="13" font-weight="%s" fill="#222">%s</text>`+"\n", chartLabelX+8, y+chartBarH-4, weight, esc(s.Kind.Label))
			fill, extra := barColor(s.Kind)
			p(`<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"%s><title>%s: %s %s</title></rect>`+"\n",
				chartBarX, y, width, chartBarH, fill, extra, esc(s.Kind.Name), thousands(s.Throughput), per)
			p(`<text x="%.1f" y="%d" font-size="12" fill="#222">%s</text>`+"\n", float64(chartBarX)+width+6, y+chartBarH-4, thousands(s.Throughput))
			y += chartBarH + chartBarGap
		}
		y += chartPanelB - chartBarGap
	}
	p("</svg>\n")
	return w.String()
}

// barColor returns a bar's fill and any further attributes: blues for
// tiercache (the default policy darkest), orange for go-redis/cache, green
// for sturdyc; experiments paler, with a dashed outline.
func barColor(k libraryKind) (fill, extra string) {
	switch {
	case k.Name == nameSequential:
		fill = "#1f4e9a"
	case k.Family == familyTiercache, k.Family == familyTiercacheMsgpack:
		fill = "#6f95d0"
	case k.Family == familyGoRedis:
		fill = "#e07b00"
	default:
		fill = "#2e8b57"
	}
	if k.Experiment {
		extra = ` fill-opacity="0.45" stroke="` + fill + `" stroke-dasharray="4 2"`
	}
	return fill, extra
}

// esc escapes s for SVG text and attributes.
func esc(s string) string { return html.EscapeString(s) }
