# Varnish in front of the Newsroom API (Varnish 7 with varnish-modules for vmod xkey).
#
#   varnishd -a :80 -f /etc/varnish/default.vcl -p vcl_path=/etc/varnish -s malloc,1g
#
# backends.vcl says where the API instances are and who may purge; newsroom.vcl is the
# caching itself and needs no change. Set CDN_PURGE=varnish and CDN_PURGE_URLS to this
# Varnish (every instance of it) on the API.
vcl 4.1;

include "backends.vcl";
include "newsroom.vcl";
