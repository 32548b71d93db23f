# Bulk forwarding against the references: throughput and forwarder CPU per GiB, median of the
# rounds, per pair count. scripts/bench runs: gnuplot -e "dir='bench/results'" bench/plot.gp
if (!exists("dir")) dir = "bench/results"
set terminal svg size 1000,420 dynamic font "DejaVu Sans,11"
set output dir."/bulk.svg"
set multiplot layout 1,2 title "strelay vs references on loopback (median of rounds; see report.md)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set grid ytics
set key top right
set yrange [0:*]
set title "throughput"
set ylabel "GiB/s"
plot for [col=2:4] dir."/bulk_gib_per_s.dat" using col:xtic(1) title columnhead
set title "forwarder CPU per GiB forwarded"
set ylabel "CPU s / GiB"
plot for [col=2:4] dir."/bulk_cpu_s_per_gib.dat" using col:xtic(1) title columnhead
unset multiplot
