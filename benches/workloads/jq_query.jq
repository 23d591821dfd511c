# jq workload over data.json: grouping, sorting, reshaping.
(group_by(.city)
 | map({city: .[0].city, n: length, total: (map(.score) | add),
        names: (map(.name) | unique | length),
        tags: (map(.tags[]) | group_by(.) | map({(.[0]): length}) | add)})),
([.[] | select(.score > 500) | .tags |= sort | {id, name, t: (.tags | join("+")), s: (.nested.b | add // 0)}]
 | sort_by(.t, .id) | length),
(map(.name) | sort | .[0:5])
