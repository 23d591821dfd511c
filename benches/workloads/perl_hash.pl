#!/usr/bin/perl
# Perl hash and regex workload: build hashes of generated records, match and
# rewrite them with regexes, sort and join. Deterministic (own LCG, no srand);
# prints a checksum of the results.
use strict;
use warnings;

my $scale = shift // 1;
my $seed = 42;
sub rnd { $seed = ($seed * 1103515245 + 12345) % 2147483648; return $seed; }

my @syll = qw(ka lo mi nu pe ra si tu vo xe za bo);
my $check = 0;
for my $round (1 .. 2 * $scale) {
    my %count;
    my %byname;
    for my $i (1 .. 60000) {
        my $name = join '', map { $syll[rnd() % @syll] } 1 .. (2 + rnd() % 4);
        my $line = sprintf "%s-%06d user=%s size=%d path=/var/%s/%d.log", $name, $i, $name, rnd() % 100000, $name, $i % 97;
        $count{$name}++;
        push @{ $byname{$name} }, $line;
    }
    my @out;
    for my $name (sort keys %byname) {
        for my $line (@{ $byname{$name} }) {
            if ($line =~ /^(\w+)-(\d+) user=(\w+) size=(\d+) path=(\S+)$/) {
                my ($n, $id, $user, $size, $path) = ($1, $2, $3, $4, $5);
                $path =~ s{/(\d+)\.log$}{/archive/$1.gz};
                push @out, "$user:$size:$path" if $size % 3 == 0;
            }
        }
    }
    my $joined = join "\n", sort { length($a) <=> length($b) or $a cmp $b } @out;
    $check = ($check * 31 + length($joined) + scalar(keys %count)) % 1000000007;
    my @words = split /[:\/\n]+/, $joined;
    my %uniq = map { $_ => 1 } @words;
    $check = ($check * 31 + scalar(keys %uniq)) % 1000000007;
}
print "perl checksum $check\n";
