// A C++ translation unit for the g++ workload: standard containers,
// templates and lambdas, compiled with -O2 (the compiler's own allocation
// pattern is what is measured).
#include <algorithm>
#include <cstdint>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace wl {

template <typename K, typename V>
struct Table {
    std::map<K, std::vector<V>> rows;
    std::unordered_map<K, std::size_t> counts;

    void add(const K &k, V v) {
        rows[k].push_back(std::move(v));
        ++counts[k];
    }

    template <typename F>
    std::vector<std::pair<K, V>> select(F pred) const {
        std::vector<std::pair<K, V>> out;
        for (const auto &[k, vs] : rows)
            for (const auto &v : vs)
                if (pred(k, v)) out.emplace_back(k, v);
        return out;
    }
};

struct Shape {
    virtual ~Shape() = default;
    virtual double area() const = 0;
    virtual std::string name() const = 0;
};

struct Rect : Shape {
    double w, h;
    Rect(double w_, double h_) : w(w_), h(h_) {}
    double area() const override { return w * h; }
    std::string name() const override { return "rect"; }
};

struct Circle : Shape {
    double r;
    explicit Circle(double r_) : r(r_) {}
    double area() const override { return 3.14159 * r * r; }
    std::string name() const override { return "circle"; }
};

template <int N>
struct Fib {
    static constexpr std::uint64_t value = Fib<N - 1>::value + Fib<N - 2>::value;
};
template <>
struct Fib<0> {
    static constexpr std::uint64_t value = 0;
};
template <>
struct Fib<1> {
    static constexpr std::uint64_t value = 1;
};

template <typename T>
std::string join(const std::vector<T> &v, const std::string &sep) {
    std::ostringstream os;
    for (std::size_t i = 0; i < v.size(); ++i) os << (i ? sep : "") << v[i];
    return os.str();
}

}  // namespace wl

int main() {
    wl::Table<std::string, int> t;
    wl::Table<int, std::string> u;
    for (int i = 0; i < 1000; ++i) {
        t.add("k" + std::to_string(i % 37), i);
        u.add(i % 11, std::to_string(i * i));
    }
    auto sel = t.select([](const std::string &k, int v) { return k.size() > 2 && v % 3 == 0; });
    auto sel2 = u.select([](int k, const std::string &v) { return k % 2 == 0 && v.size() > 3; });
    std::vector<std::unique_ptr<wl::Shape>> shapes;
    for (int i = 0; i < 100; ++i) {
        if (i % 2) shapes.push_back(std::make_unique<wl::Rect>(i, i + 1));
        else shapes.push_back(std::make_unique<wl::Circle>(i));
    }
    std::sort(shapes.begin(), shapes.end(), [](const auto &a, const auto &b) { return a->area() < b->area(); });
    std::set<std::string> names;
    std::multimap<double, std::string> by_area;
    for (const auto &s : shapes) {
        names.insert(s->name());
        by_area.emplace(s->area(), s->name());
    }
    std::vector<int> nums(500);
    std::iota(nums.begin(), nums.end(), 1);
    std::function<int(int)> sq = [](int x) { return x * x; };
    std::transform(nums.begin(), nums.end(), nums.begin(), sq);
    std::unordered_map<std::string, std::vector<std::pair<int, double>>> nested;
    for (int i = 0; i < 200; ++i) nested["n" + std::to_string(i % 13)].emplace_back(i, i * 0.5);
    std::cout << sel.size() << ' ' << sel2.size() << ' ' << names.size() << ' ' << by_area.size() << ' '
              << wl::join(std::vector<int>(nums.begin(), nums.begin() + 5), ",") << ' ' << nested.size() << ' '
              << wl::Fib<60>::value << '\n';
    return 0;
}
