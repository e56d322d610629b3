# The Newsroom API's caching rules, shared by every deployment (see default.vcl).
#
# - Only anonymous GETs and HEADs are shared; the query string is sorted, as the API keys
#   its own cache on its declared parameters in canonical order.
# - Only a 200 that names what it shows (Surrogate-Key) is stored; its keys go to vmod
#   xkey, so `PURGE` with `xkey-purge: <keys>` drops exactly the pages showing them (the
#   API sends these when a write commits). Everything else is passed, never stored.
# - Freshness comes from the API: Surrogate-Control (CDN_MAX_AGE) if set, else
#   Cache-Control's max-age. While the API is healthy a stale page may be served during
#   stale-while-revalidate (refreshed in the background); while every instance is sick
#   (its database down), stale pages are served for as long as stale-if-error allows.
import std;
import xkey;

sub vcl_recv {
    if (req.method == "PURGE") {
        if (!client.ip ~ newsroom_purgers) {
            return (synth(403, "Forbidden"));
        }
        if (!req.http.xkey-purge) {
            return (synth(400, "Send the keys to purge in xkey-purge"));
        }
        set req.http.n-gone = xkey.purge(req.http.xkey-purge);
        return (synth(200, "Purged " + req.http.n-gone));
    }
    set req.backend_hint = newsroom.backend();
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    if (req.http.Authorization || req.http.X-Comment-Token || req.http.Cookie) {
        return (pass);
    }
    set req.url = std.querysort(req.url);
    if (std.healthy(req.backend_hint)) {
        # Stale beyond this is fetched afresh while the API answers.
        set req.grace = 30s;
    }
    return (hash);
}

sub vcl_backend_response {
    if (beresp.status >= 500 && bereq.is_bgfetch) {
        # A background refresh that failed: keep serving the stale copy.
        return (abandon);
    }
    if (beresp.status != 200 || !beresp.http.Surrogate-Key || beresp.http.Vary ~ "(?i)x-forwarded") {
        set beresp.uncacheable = true;
        set beresp.ttl = 1s;
        return (deliver);
    }
    set beresp.http.xkey = beresp.http.Surrogate-Key;
    if (beresp.http.Surrogate-Control ~ "max-age=[0-9]+") {
        set beresp.ttl = std.duration(
            regsub(beresp.http.Surrogate-Control, ".*max-age=([0-9]+).*", "\1s"), beresp.ttl);
    }
    if (beresp.http.Cache-Control ~ "stale-if-error=[0-9]+") {
        set beresp.grace = std.duration(
            regsub(beresp.http.Cache-Control, ".*stale-if-error=([0-9]+).*", "\1s"), 1h);
    }
    unset beresp.http.Surrogate-Control;
    return (deliver);
}

sub vcl_deliver {
    if (resp.http.X-Cache) {
        set resp.http.X-Cache-Origin = resp.http.X-Cache;
    }
    if (obj.uncacheable) {
        set resp.http.X-Cache = "PASS";
    } elsif (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
    unset resp.http.xkey;
}
