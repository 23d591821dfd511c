# gawk workload: per-city aggregates and word frequencies over data.csv,
# associative arrays, string building and sorting (asorti).
BEGIN { FS = "," }
NR == 1 { next }
{
    city = $3
    n[city]++
    score[city] += $4
    names[city] = length(names[city]) < 4096 ? names[city] " " $2 : $2
    k = split($5, w, " ")
    for (i = 1; i <= k; i++) {
        freq[w[i]]++
        pair[w[i] "/" city]++
        if (i > 1) bigram[w[i - 1] " " w[i]]++
    }
    key[$2 "@" city] = $1
}
END {
    m = asorti(freq, fw)
    for (i = 1; i <= m; i++) printf "%s %d\n", fw[i], freq[fw[i]]
    m = asorti(n, cs)
    for (i = 1; i <= m; i++) printf "%s %d %d %d\n", cs[i], n[cs[i]], score[cs[i]], length(names[cs[i]])
    printf "pairs %d bigrams %d keys %d\n", length(pair), length(bigram), length(key)
}
