; example.com: a hand-written zone; tlsa-manager changes only the TLSA lines
$ORIGIN example.com.
$TTL 3600
@       IN SOA  ns1 hostmaster (
                2026112501 ; serial (YYYYMMDDnn)
                7200 3600 1209600 300 )
        IN NS   ns1
        IN NS   ns2
        IN MX   10 mail
ns1     IN A    192.0.2.1
ns2     IN A    198.51.100.1
mail    IN A    192.0.2.25
mail    IN AAAA 2001:db8::25
