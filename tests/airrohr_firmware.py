"""What the sensor.community (airrohr) firmware sends to "own API", byte for byte.

Built the way the firmware builds it (airrohr-firmware.ino, opendata-stuttgart/
sensors-software): ``data_first_part`` is ``{"software_version": "<v>",
"sensordatavalues":[``; each sensor's ``add_Value2Json`` appends
``{"value_type":"<t>","value":"<v>"},`` with the value as Arduino's
``String(float)`` (two decimals); the loop then appends samples, min_micro,
max_micro, interval and signal, drops the last comma and closes with ``]}``.
``sendDataToOptionalApis`` removes the first ``{`` and puts ``{"esp8266id":
"<chipid>", `` in front. The request is ESP8266HTTPClient's (``sendHeader``):
request line, Host (``:port`` unless 80/443), User-Agent ``<version>/<chipid>``,
``Connection: close``, Accept-Encoding, ``Authorization: Basic`` when a user or
password is set, then the added headers in order: Content-Type, X-Sensor,
X-MAC-ID, and the Content-Length that ``POST`` adds.
"""

from __future__ import annotations

import base64

VERSION = "NRZ-2020-133"
CHIP = "13597771"
MAC = "5ccf7f3c9a1b"

# SDS011 (PM10, PM2.5), BME280 (Pa), DNMS (dB(A)), in the firmware's order, then metadata.
VALUES = (("SDS_P1", "12.30"), ("SDS_P2", "7.10"),
          ("BME280_temperature", "21.37"), ("BME280_pressure", "100712.34"),
          ("BME280_humidity", "48.92"),
          ("DNMS_noise_LAeq", "55.81"), ("DNMS_noise_LA_min", "48.20"),
          ("DNMS_noise_LA_max", "71.44"),
          ("samples", "5118"), ("min_micro", "28"), ("max_micro", "20045"),
          ("interval", "145000"), ("signal", "-68"))


def body(values: tuple[tuple[str, str], ...] = VALUES, chip: str = CHIP,
         kind: str = "esp8266") -> bytes:
    data = '{"software_version": "' + VERSION + '", "sensordatavalues":['
    for value_type, value in values:
        data += '{"value_type":"' + value_type + '","value":"' + value + '"},'
    if data.endswith(","):
        data = data[:-1]
    data += "]}"
    return ('{"' + kind + 'id": "' + chip + '", ' + data[1:]).encode()


# The firmware's push with the values above, as it goes on the wire (checked by hand
# against the construction above).
BODY = (b'{"esp8266id": "13597771", "software_version": "NRZ-2020-133", "sensordatavalues":['
        b'{"value_type":"SDS_P1","value":"12.30"},{"value_type":"SDS_P2","value":"7.10"},'
        b'{"value_type":"BME280_temperature","value":"21.37"},'
        b'{"value_type":"BME280_pressure","value":"100712.34"},'
        b'{"value_type":"BME280_humidity","value":"48.92"},'
        b'{"value_type":"DNMS_noise_LAeq","value":"55.81"},'
        b'{"value_type":"DNMS_noise_LA_min","value":"48.20"},'
        b'{"value_type":"DNMS_noise_LA_max","value":"71.44"},'
        b'{"value_type":"samples","value":"5118"},{"value_type":"min_micro","value":"28"},'
        b'{"value_type":"max_micro","value":"20045"},{"value_type":"interval","value":"145000"},'
        b'{"value_type":"signal","value":"-68"}]}')


def request(host: str, port: int, path: str, data: bytes, *, chip: str = CHIP,
            kind: str = "esp8266", user: str = "", password: str = "") -> bytes:
    """The HTTP request the firmware's sendData makes for the custom API."""
    head = f"POST {path} HTTP/1.1\r\nHost: {host}"
    if port not in (80, 443):
        head += f":{port}"
    head += (f"\r\nUser-Agent: {VERSION}/{chip}\r\nConnection: close\r\n"
             "Accept-Encoding: identity;q=1,chunked;q=0.1,*;q=0\r\n")
    if user or password:
        head += "Authorization: Basic " + base64.b64encode(
            f"{user}:{password}".encode()).decode() + "\r\n"
    head += (f"Content-Type: application/json\r\nX-Sensor: {kind}-{chip}\r\n"
             f"X-MAC-ID: {kind}-{MAC}\r\nContent-Length: {len(data)}\r\n\r\n")
    return head.encode() + data
