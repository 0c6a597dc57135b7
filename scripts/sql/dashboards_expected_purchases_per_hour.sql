-- Dashboards check only: what "Purchases per hour by browser and device" must show for a
-- range, straight from the marts (scripts/dashboards.py compares it with Superset's answer):
-- every hour, browser and device with events, with 0 where none was a purchase.
SELECT toString(hour), browser_name, device_type, sumIf(events, page_url_path = {purchase_path:String})
FROM {database:Identifier}.mart_hourly_events
WHERE hour >= {from_hour:DateTime('UTC')} AND hour < {to_hour:DateTime('UTC')}
GROUP BY hour, browser_name, device_type;
