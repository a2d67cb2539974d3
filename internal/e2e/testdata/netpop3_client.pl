#!/usr/bin/perl
# Drive postoffice with Perl's Net::POP3 and print what it saw as JSON.
# usage: netpop3_client.pl HOST PORT USER PASSWORD
# Methods: login, list, uidl, get, top, delete, quit.
use strict;
use warnings;
use Net::POP3;
use JSON::PP;
use MIME::Base64;

my ($host, $port, $user, $pass) = @ARGV;
my $pop = Net::POP3->new($host, Port => $port, Timeout => 30) or die "connect: $@";
my %out;
my $count = $pop->login($user, $pass);
die "login failed: " . $pop->message unless defined $count;
$out{login} = $count + 0;
my $list = $pop->list;
$out{list} = { map { $_ => $list->{$_} + 0 } keys %$list };
my $uidl = $pop->uidl;
$out{uidl} = $uidl;
$out{uidl1} = $pop->uidl(1);
my %get;
for my $n (sort keys %$list) {
    my $lines = $pop->get($n) or die "get $n failed";
    $get{$n} = encode_base64(join('', @$lines), '');
}
$out{get} = \%get;
my $top = $pop->top(1, 0) or die "top failed";
$out{top1} = encode_base64(join('', @$top), '');
$pop->delete(1) or die "delete failed";
$out{quit} = $pop->quit ? 1 : 0;
print encode_json(\%out), "\n";
