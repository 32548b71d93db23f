#include "strelay/status_page.hpp"

#include <algorithm>
#include <cstdio>

namespace strelay {
namespace {

// Chart geometry (SVG user units); the script below uses the same numbers.
constexpr double chart_width = 600;
constexpr double chart_height = 150;

constexpr std::string_view css = R"css(
:root{color-scheme:light dark;--bg:#f6f7f9;--fg:#1d2330;--muted:#6a7385;--card:#fff;--line:#e3e6eb;
--a1:#2f6fde;--a2:#d9822b;--ok:#1f9d55;--bad:#c53030}
@media (prefers-color-scheme:dark){:root{--bg:#12151b;--fg:#e6e9ef;--muted:#8d96a8;--card:#1b2029;
--line:#2a313d;--a1:#6ea1ff;--a2:#f0a35e;--ok:#48bb78;--bad:#fc8181}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:1100px;margin:0 auto;padding:24px 16px 40px}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:12px;margin-bottom:20px}
h1{font-size:26px;margin:0;letter-spacing:-.5px}
h2{font-size:13px;text-transform:uppercase;letter-spacing:.08em;color:var(--muted);margin:0 0 12px}
.muted{color:var(--muted)}
.badge{font-size:12px;font-weight:600;padding:2px 10px;border-radius:999px;background:var(--ok);color:#fff}
.badge.bad{background:var(--bad)}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(160px,1fr));gap:12px;margin-bottom:12px}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:12px;margin-bottom:12px}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:16px}
.stat .v{font-size:28px;font-weight:650;font-variant-numeric:tabular-nums;letter-spacing:-.5px}
.stat .l{color:var(--muted);font-size:13px}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
.key{word-break:break-all;user-select:all}
pre{white-space:pre-wrap;word-break:break-all;margin:0;background:var(--bg);padding:10px;border-radius:8px}
table{width:100%;border-collapse:collapse;font-size:14px}
td{padding:4px 0;border-bottom:1px solid var(--line)}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr:last-child td{border-bottom:0}
.qr{max-width:220px;background:#fff;padding:8px;border-radius:8px;margin-top:12px}
.qr svg{width:100%;height:auto;display:block}
svg.chart{width:100%;height:auto;display:block}
.chart .grid-line{stroke:var(--line);stroke-width:1}
.chart text{fill:var(--muted);font-size:11px;font-variant-numeric:tabular-nums}
.chart .r{text-anchor:end}.chart .c{text-anchor:middle}
.chart .l1{fill:none;stroke:var(--a1);stroke-width:2;stroke-linejoin:round}
.chart .l2{fill:none;stroke:var(--a2);stroke-width:2;stroke-linejoin:round;stroke-dasharray:5 3}
.legend{display:flex;gap:16px;font-size:13px;color:var(--muted);margin-top:8px;flex-wrap:wrap}
.sw1,.sw2{display:inline-block;width:14px;height:3px;vertical-align:middle;margin-right:6px}
.sw1{background:var(--a1)}.sw2{background:var(--a2)}
footer{margin-top:20px;font-size:13px}
a{color:var(--a1)}
)css";

// Polls /status and /samples; updates [data-k] elements by path, and redraws the chart.
constexpr std::string_view script = R"js(
(function(){
var W=600,H=150;
function get(o,p){return p.split('.').reduce(function(a,k){return a==null?undefined:a[k];},o);}
function num(n){return Number(n).toLocaleString('en-US',{maximumFractionDigits:1});}
function bytes(n){var u=['B','KiB','MiB','GiB','TiB','PiB'],i=0;n=Number(n);
 while(n>=1024&&i<u.length-1){n/=1024;i++;}return (i?n.toFixed(1):String(Math.round(n)))+' '+u[i];}
function dur(s){s=Math.max(0,Math.floor(s));var d=Math.floor(s/86400),h=Math.floor(s%86400/3600),
 m=Math.floor(s%3600/60);return d?d+'d '+h+'h '+m+'m':h?h+'h '+m+'m':m?m+'m '+(s%60)+'s':s+'s';}
function sum(o){var t=0;for(var k in o)t+=Number(o[k]);return t;}
function fmt(v,f){switch(f){case'bytes':return bytes(v);case'sumbytes':return bytes(sum(v));
 case'bps':return bytes(v)+'/s';case'rate':return Number(v).toFixed(1)+'/s';case'dur':return dur(v);
 case'fds':return v<0?'n/a':num(v);default:return num(v);}}
function pts(list,max,win,tl){return list.map(function(p){var x=W-(tl-p[0])/win*W;
 var y=H-p[1]/max*H*0.9;return x.toFixed(1)+','+y.toFixed(1);}).join(' ');}
function chart(d,st){var s=(d.samples||[]).slice(),t=Date.parse(st.now);
 if(t>0&&(!s.length||t>s[s.length-1].t))s.push({t:t,bytes:sum(st.counters.relayed_bytes_total),
  connections:st.gauges.connections});
 if(!s.length)return;var tl=s[s.length-1].t,
 win=(d.interval_seconds||5)*1000*Math.max(s.length,120),r=[],c=[],mr=0,mc=0;
 for(var i=0;i<s.length;i++){c.push([s[i].t,s[i].connections]);mc=Math.max(mc,s[i].connections);
  if(i>0&&s[i].t>s[i-1].t){var v=Math.max(0,(s[i].bytes-s[i-1].bytes)/(s[i].t-s[i-1].t)*1000);
   r.push([s[i].t,v]);mr=Math.max(mr,v);}}
 document.getElementById('l1').setAttribute('points',pts(r,Math.max(mr,1),win,tl));
 document.getElementById('l2').setAttribute('points',pts(c,Math.max(mc,1),win,tl));
 document.getElementById('peak').textContent=bytes(mr)+'/s';
 document.getElementById('maxc').textContent=num(mc);
 var ax={a1t:bytes(Math.max(mr,1))+'/s',a1m:bytes(Math.max(mr,1)/2)+'/s',a2t:num(Math.max(mc,1)),
  a2m:num(Math.max(mc,1)/2)};for(var k in ax)document.getElementById(k).textContent=ax[k];}
function tunnels(list){var tb=document.getElementById('tunnels');if(!tb||!list)return;
 while(tb.firstChild)tb.removeChild(tb.firstChild);
 list.forEach(function(t){var tr=document.createElement('tr');
  [t.connector+' \u2192 '+t.listener,dur(t.age_seconds),bytes(t.bytes_to_listener)+' / '+
   bytes(t.bytes_to_connector),bytes(t.bytes_per_second_to_listener+t.bytes_per_second_to_connector)+'/s']
  .forEach(function(v,i){var td=document.createElement('td');if(i)td.className='n';
   td.textContent=v;tr.appendChild(td);});tb.appendChild(tr);});
 document.getElementById('tunnels-none').hidden=list.length>0;}
function state(ok){var b=document.getElementById('state');b.textContent=ok?'live':'unreachable';
 b.className=ok?'badge':'badge bad';}
function tick(){Promise.all([fetch('/status',{cache:'no-store'}).then(function(r){return r.json();}),
 fetch('/samples',{cache:'no-store'}).then(function(r){return r.json();})]).then(function(a){
 document.querySelectorAll('[data-k]').forEach(function(el){var v=get(a[0],el.getAttribute('data-k'));
  if(v!==undefined&&v!==null)el.textContent=fmt(v,el.getAttribute('data-f'));});
 chart(a[1],a[0]);tunnels(a[0].open_tunnels);state(true);}).catch(function(){state(false);});}
setInterval(tick,2000);tick();
})();
)js";

std::string group_digits(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

std::string signed_digits(std::int64_t n) {
  return n < 0 ? "-" + group_digits(static_cast<std::uint64_t>(-(n + 1)) + 1)
               : group_digits(static_cast<std::uint64_t>(n));
}

std::string one_decimal(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// 12 or 2.5: a whole number without its ".0".
std::string one_decimal_or_whole(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf,
                v == static_cast<double>(static_cast<std::int64_t>(v)) ? "%.0f" : "%.1f", v);
  return buf;
}

// A live value: `path` is its place in /status, `format` tells the script how to print it.
std::string live(std::string_view path, std::string_view format, const std::string& text) {
  return "<span data-k=\"" + html_escape(path) + "\" data-f=\"" + html_escape(format) + "\">" +
         html_escape(text) + "</span>";
}

std::string stat(std::string_view label, std::string_view path, std::string_view format,
                 const std::string& text) {
  return "<div class=\"card stat\"><div class=\"v\">" + live(path, format, text) +
         "</div><div class=\"l\">" + html_escape(label) + "</div></div>\n";
}

template <class E>
std::string family_table(std::string_view title, std::string_view family,
                         const CounterFamily<E>& counters) {
  std::string out = "<div class=\"card\"><h2>" + html_escape(title) + "</h2><table>\n";
  for (const auto& [value, name] : MetricLabels<E>::all) {
    const std::string path = "counters." + std::string(family) + "." + std::string(name);
    out += "<tr><td>" + html_escape(name) + "</td><td class=\"n\">" +
           live(path, "n", group_digits(counters.get(value))) + "</td></tr>\n";
  }
  return out + "</table></div>\n";
}

std::string points(const std::vector<std::pair<double, double>>& list, double max, double window,
                   double last) {
  std::string out;
  char buf[48];
  for (const auto& [t, v] : list) {
    const double x = chart_width - (last - t) / window * chart_width;
    const double y = chart_height - v / max * chart_height * 0.9;
    std::snprintf(buf, sizeof buf, "%s%.1f,%.1f", out.empty() ? "" : " ", x, y);
    out += buf;
  }
  return out;
}

// Grid lines at the scale's top (a value of `max` is drawn at 90% of the height), middle and
// zero, with their values: throughput on the left, connections on the right, and the time
// axis below. The script rewrites the values (ids a1t, a1m, a2t, a2m) as the scale changes.
std::string axes(double max_rate, double max_conns, double window_minutes) {
  std::string out;
  const struct {
    double y;
    const char* rate_id;
    const char* conns_id;
    double share;
  } rows[] = {{chart_height * 0.1, "a1t", "a2t", 1.0},
              {chart_height * 0.55, "a1m", "a2m", 0.5},
              {chart_height, nullptr, nullptr, 0.0}};
  char buf[64];
  for (const auto& row : rows) {
    std::snprintf(buf, sizeof buf, "%.1f", row.y);
    const std::string y = buf;
    std::snprintf(buf, sizeof buf, "%.1f", row.y + 4);
    const std::string text_y = buf;
    out += "<line class=\"grid-line\" x1=\"0\" x2=\"600\" y1=\"" + y + "\" y2=\"" + y + "\"/>";
    const std::string rate = format_bytes(max_rate * row.share) + "/s";
    const std::string conns = row.share == 0 ? "0" : one_decimal_or_whole(max_conns * row.share);
    out += "<text class=\"r\" x=\"-6\" y=\"" + text_y + "\"" +
           (row.rate_id ? std::string(" id=\"") + row.rate_id + "\"" : std::string()) + ">" +
           html_escape(rate) + "</text>";
    out += "<text x=\"606\" y=\"" + text_y + "\"" +
           (row.conns_id ? std::string(" id=\"") + row.conns_id + "\"" : std::string()) + ">" +
           html_escape(conns) + "</text>";
  }
  const auto minutes = static_cast<int>(window_minutes + 0.5);
  out += "<text x=\"0\" y=\"168\">-" + std::to_string(minutes) + " min</text>";
  out += "<text class=\"c\" x=\"300\" y=\"168\">-" + one_decimal_or_whole(minutes / 2.0) +
         " min</text>";
  out += "<text class=\"r\" x=\"600\" y=\"168\">now</text>";
  return out;
}

// The same drawing the script makes, so the chart is there without JavaScript too.
std::string chart(const std::vector<MetricsSample>& samples) {
  std::vector<std::pair<double, double>> rate;
  std::vector<std::pair<double, double>> conns;
  double max_rate = 0;
  std::int64_t max_conns = 0;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const auto& s = samples[i];
    conns.emplace_back(static_cast<double>(s.unix_ms), static_cast<double>(s.connections));
    max_conns = std::max(max_conns, s.connections);
    if (i > 0 && s.unix_ms > samples[i - 1].unix_ms &&
        s.relayed_bytes_total >= samples[i - 1].relayed_bytes_total) {
      const double v =
          static_cast<double>(s.relayed_bytes_total - samples[i - 1].relayed_bytes_total) /
          static_cast<double>(s.unix_ms - samples[i - 1].unix_ms) * 1000.0;
      rate.emplace_back(static_cast<double>(s.unix_ms), v);
      max_rate = std::max(max_rate, v);
    }
  }
  const double interval_ms =
      std::chrono::duration<double, std::milli>(status_sample_interval).count();
  const double window =
      interval_ms * static_cast<double>(std::max(samples.size(), status_sample_count));
  const double last = samples.empty() ? 0 : static_cast<double>(samples.back().unix_ms);
  std::string out = "<div class=\"card\"><h2>Throughput and connections, last 10 minutes</h2>\n";
  out +=
      "<svg class=\"chart\" viewBox=\"-78 -8 736 180\" role=\"img\" aria-label=\"throughput and "
      "connections\">";
  out += axes(std::max(max_rate, 1.0), std::max(static_cast<double>(max_conns), 1.0),
              window / 60000.0);
  out += "<polyline id=\"l1\" class=\"l1\" points=\"" +
         points(rate, std::max(max_rate, 1.0), window, last) + "\"/>";
  out += "<polyline id=\"l2\" class=\"l2\" points=\"" +
         points(conns, std::max(static_cast<double>(max_conns), 1.0), window, last) +
         "\"/></svg>\n";
  out += "<div class=\"legend\"><span><i class=\"sw1\"></i>throughput, peak <b id=\"peak\">" +
         html_escape(format_bytes(max_rate)) +
         "/s</b></span><span><i class=\"sw2\"></i>connections, max <b id=\"maxc\">" +
         signed_digits(max_conns) + "</b></span><span>one sample every " +
         std::to_string(
             std::chrono::duration_cast<std::chrono::seconds>(status_sample_interval).count()) +
         " s</span></div></div>\n";
  return out;
}

// The samples plus one for the moment of rendering, so the chart reaches "now" and a relay
// started a moment ago already shows a line.
std::vector<MetricsSample> with_now(const std::vector<MetricsSample>& samples,
                                    const StatusView& view) {
  auto out = samples;
  const auto now = take_sample(view.metrics, view.now);
  if (out.empty() || now.unix_ms > out.back().unix_ms) out.push_back(now);
  return out;
}

std::string identity_card(const StatusInfo& info) {
  std::string out = "<div class=\"card\"><h2>Relay identity</h2>\n";
  out += "<div class=\"muted\">Public key</div><div class=\"mono key\">" +
         html_escape(info.public_key) + "</div>\n";
  out += "<div class=\"muted\" style=\"margin-top:10px\">Listening on</div><div class=\"mono\">";
  for (std::size_t i = 0; i < info.listen_addresses.size(); ++i) {
    out += (i ? ", " : "") + html_escape(info.listen_addresses[i]);
  }
  out += "</div>\n";
  if (info.ticket_json.empty()) {
    out +=
        "<p class=\"muted\">No ticket: start strelay with --public-address HOST:PORT to show the "
        "relay "
        "ticket and its QR code here.</p>";
  } else {
    out +=
        "<div class=\"muted\" style=\"margin-top:10px\">Relay ticket (save as "
        "<code>relay.relay</code>, or "
        "scan)</div><pre>" +
        html_escape(info.ticket_json) + "</pre>\n";
    out += "<div style=\"margin-top:8px\"><a href=\"" + std::string(ticket_download_path) +
           "\" download=\"relay.relay\">Download relay.relay</a></div>\n";
    // Trusted markup from common/qr. Inline SVG in HTML takes no XML declaration (the parser
    // would keep it as a bogus comment), so the markup starts at <svg.
    const auto svg = info.qr_svg.find("<svg");
    if (svg != std::string::npos)
      out += "<div class=\"qr\">" + info.qr_svg.substr(svg) + "</div>\n";
  }
  return out + "</div>\n";
}

// A limit's value as /status gives it: 10, 0.5, 262144, clamp (the unit is in the name).
std::string limit_text(const LimitValue& limit) {
  if (!limit.text.empty()) return limit.text;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", limit.number);
  return buf;
}

// The busiest open tunnels: who (key fingerprints), how long, bytes each way, the rate now.
std::string tunnels_card(const Metrics& m) {
  std::string out =
      "<div class=\"card\" style=\"margin-bottom:12px\"><h2>Open tunnels, busiest first</h2>"
      "<table>\n"
      "<thead><tr><td>connector &rarr; listener</td><td class=\"n\">age</td>"
      "<td class=\"n\">to listener / to connector</td><td class=\"n\">now</td></tr></thead>"
      "<tbody id=\"tunnels\">\n";
  const auto list = m.busiest_tunnels ? m.busiest_tunnels() : std::vector<Metrics::TunnelLoad>{};
  for (const auto& t : list) {
    out += "<tr><td class=\"mono\">" + html_escape(t.connector) + " &rarr; " +
           html_escape(t.listener) + "</td><td class=\"n\">" +
           html_escape(format_duration(static_cast<std::int64_t>(t.age_seconds))) +
           "</td><td class=\"n\">" + html_escape(format_bytes(static_cast<double>(t.bytes[0]))) +
           " / " + html_escape(format_bytes(static_cast<double>(t.bytes[1]))) +
           "</td><td class=\"n\">" + html_escape(format_bytes(t.rate[0] + t.rate[1])) +
           "/s</td></tr>\n";
  }
  out += "</tbody></table><p class=\"muted\" id=\"tunnels-none\"" +
         std::string(list.empty() ? "" : " hidden") + ">No open tunnels.</p></div>\n";
  return out;
}

std::string details_card(const StatusView& view) {
  const auto& p = view.process;
  std::string out = "<div class=\"card\"><h2>Process and limits</h2><table>\n";
  auto row = [&out](std::string_view name, const std::string& value_html) {
    out += "<tr><td>" + html_escape(name) + "</td><td class=\"n\">" + value_html + "</td></tr>\n";
  };
  row("open file descriptors",
      live("process.open_fds", "fds", p.open_fds < 0 ? "n/a" : signed_digits(p.open_fds)) + " / " +
          html_escape(p.max_fds < 0 ? "n/a" : signed_digits(p.max_fds)));
  row("resident memory",
      live("process.resident_memory_bytes", "bytes",
           p.resident_bytes < 0 ? "n/a" : format_bytes(static_cast<double>(p.resident_bytes))));
  std::string accept_errors;
  for (const auto& [value, name] : MetricLabels<AcceptError>::all) {
    accept_errors += (accept_errors.empty() ? "" : " &middot; ") +
                     live("counters.accept_errors_total." + std::string(name), "n",
                          group_digits(view.metrics.accept_errors_total.get(value))) +
                     " " + std::string(name);
  }
  row("accept errors", accept_errors);
  for (const auto& limit : view.info.limits) row(limit.name, html_escape(limit_text(limit)));
  return out + "</table></div>\n";
}

}  // namespace

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string format_bytes(double bytes) {
  static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  std::size_t i = 0;
  while (bytes >= 1024 && i + 1 < std::size(units)) {
    bytes /= 1024;
    ++i;
  }
  char buf[32];
  if (i == 0)
    std::snprintf(buf, sizeof buf, "%.0f %s", bytes, units[i]);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", bytes, units[i]);
  return buf;
}

std::string format_duration(std::int64_t s) {
  s = std::max<std::int64_t>(s, 0);
  const auto d = s / 86400;
  const auto h = s % 86400 / 3600;
  const auto m = s % 3600 / 60;
  if (d > 0) return std::to_string(d) + "d " + std::to_string(h) + "h " + std::to_string(m) + "m";
  if (h > 0) return std::to_string(h) + "h " + std::to_string(m) + "m";
  if (m > 0) return std::to_string(m) + "m " + std::to_string(s % 60) + "s";
  return std::to_string(s) + "s";
}

std::string status_page_csp(std::string_view script_nonce) {
  return "default-src 'none'; script-src 'nonce-" + std::string(script_nonce) +
         "'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; base-uri 'none'; "
         "form-action 'none'; frame-ancestors 'none'";
}

std::string render_status_page(const StatusView& view, const std::vector<MetricsSample>& samples,
                               std::string_view script_nonce) {
  const auto& m = view.metrics;
  const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(m.uptime()).count();
  std::string out;
  out.reserve(24 * 1024);
  out +=
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
      "<title>strelay " +
      html_escape(view.info.public_key.substr(0, 8)) +
      "</title>\n"
      "<noscript><meta http-equiv=\"refresh\" content=\"10\"></noscript>\n<style>";
  out += css;
  out +=
      "</style></head><body><main>\n<header><h1>strelay</h1><span class=\"badge\" "
      "id=\"state\">running</span>"
      "<span class=\"muted\">version " +
      html_escape(view.info.version) + " &middot; up " +
      live("uptime_seconds", "dur", format_duration(uptime)) + " &middot; since " +
      html_escape(format_utc(view.info.start_time)) + "</span></header>\n<div class=\"grid\">\n";
  out += stat("connections", "gauges.connections", "n", signed_digits(m.connections.get()));
  out += stat("listeners", "gauges.listeners", "n", signed_digits(m.listeners.get()));
  out += stat("tunnels", "gauges.tunnels", "n", signed_digits(m.tunnels.get()));
  out += stat("half-tunnels", "gauges.half_tunnels", "n", signed_digits(m.half_tunnels.get()));
  out += stat("pending handshakes", "gauges.pending_handshakes", "n",
              signed_digits(m.pending_handshakes.get()));
  out += stat("bytes relayed", "counters.relayed_bytes_total", "sumbytes",
              format_bytes(static_cast<double>(m.bytes_relayed_total.total())));
  out += stat("throughput", "rates.relayed_bytes_per_second", "bps",
              format_bytes(view.rates.relayed_bytes_per_second) + "/s");
  out += stat("accepts per second", "rates.accepts_per_second", "rate",
              one_decimal(view.rates.accepts_per_second) + "/s");
  out += "</div>\n";
  out += chart(with_now(samples, view));
  out += tunnels_card(m);
  out += "<div class=\"cols\">\n" + identity_card(view.info) +
         family_table("Limit hits", "limit_hits_total", m.limit_hits_total) + "</div>\n";
  out += "<div class=\"cols\">\n" +
         family_table("Handshakes", "handshakes_total", m.handshakes_total) +
         family_table("Connect outcomes", "connect_outcomes_total", m.connect_outcomes_total) +
         family_table("Closes by reason", "closes_total", m.closes_total) + details_card(view) +
         "</div>\n";
  out +=
      "<footer class=\"muted\">Machine-readable: <a href=\"/metrics\">/metrics</a> (Prometheus) "
      "&middot; "
      "<a href=\"/status\">/status</a> (JSON) &middot; <a href=\"/samples\">/samples</a> &middot; "
      "<a href=\"/healthz\">/healthz</a>. Page rendered at " +
      html_escape(format_utc(view.now)) +
      "; it updates every 2 s with JavaScript, every 10 s without.</footer>\n";
  out += "</main><script nonce=\"" + html_escape(script_nonce) + "\">";
  out += script;
  out += "</script></body></html>\n";
  return out;
}

}  // namespace strelay
