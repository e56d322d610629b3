# Where the API instances listen (edit for your deployment). /readyz answers 503 while an
# instance cannot reach its database: Varnish then counts it sick and, with none healthy,
# serves what it has for as long as stale-if-error allows.
import directors;

probe newsroom_ready {
    .url = "/readyz";
    .interval = 2s;
    .timeout = 1s;
    .window = 3;
    .threshold = 2;
    .initial = 2;
}

backend api1 { .host = "127.0.0.1"; .port = "8000"; .probe = newsroom_ready; }
backend api2 { .host = "127.0.0.1"; .port = "8001"; .probe = newsroom_ready; }

# Who may send PURGE (the API's outbox worker runs on the API machines).
acl newsroom_purgers {
    "127.0.0.1";
    "::1";
}

sub vcl_init {
    new newsroom = directors.round_robin();
    newsroom.add_backend(api1);
    newsroom.add_backend(api2);
}
