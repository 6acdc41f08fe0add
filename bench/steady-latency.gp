# The plot of scenario 4 ("steady"): the latency from the ingest request to the webhook's
# arrival at the receiver, for every session of every run, as a percentile distribution
# (x: the percentile, stretched towards the tail; y: the latency, log scale), one line per
# run, with the p99 target, and (optional `floor`) the harness alone for comparison.
# bench/scenarios/steady.sh runs it:
#
#   gnuplot -e "outfile='OUT.png'; files='run1.txt run2.txt'; floor='harness.txt';
#               target=10; subtitle='...'" bench/steady-latency.gp
#
# Each file holds `fraction latency_ms` lines, sorted (bench_steady --latencies).
if (!exists("outfile")) outfile = 'steady-latency.png'
if (!exists("files")) files = 'latencies.txt'
if (!exists("target")) target = 10
if (!exists("subtitle")) subtitle = ''
if (!exists("floor")) floor = ''

# Room above the highest point and the target line, so both are always in the picture.
ymax = 2 * target
do for [i = 1:words(files)] {
    stats word(files, i) using 2 nooutput
    if (STATS_max * 1.5 > ymax) { ymax = STATS_max * 1.5 }
}

set terminal pngcairo size 960,560 font 'sans,10'
set output outfile
set title "Steady load: POST /internal/v1/sessions → webhook read by the receiver\n" . subtitle
set logscale x
set logscale y
set xrange [1:*]
set yrange [*:ymax]
set xtics ("0%%" 1, "50%%" 2, "90%%" 10, "99%%" 100, "99.9%%" 1000, "99.99%%" 10000, \
           "99.999%%" 100000)
set format y "%g"
set xlabel "percentile of the sessions"
set ylabel "latency (ms)"
set grid xtics ytics mytics
set key bottom right box opaque
set arrow from graph 0, first target to graph 1, first target nohead dashtype 2 lc rgb "red"
set label sprintf("target: p99 < %g ms", target) at graph 0.01, first target \
    offset 0, 0.8 textcolor rgb "red"
set arrow from 100, graph 0 to 100, graph 1 nohead dashtype 3 lc rgb "gray40"
if (floor ne '') {
    plot for [i = 1:words(files)] word(files, i) using (1 / (1 - $1)):2 with lines lw 1.5 \
             title sprintf("run %d", i), \
         floor using (1 / (1 - $1)):2 with lines lw 1 dashtype 4 lc rgb "gray50" \
             title "the harness alone (no daemon)"
} else {
    plot for [i = 1:words(files)] word(files, i) using (1 / (1 - $1)):2 with lines lw 1.5 \
        title sprintf("run %d", i)
}
