/* The consoles' service worker. It only shows alerts: the page hands it each new alert
   (registration.showNotification works while the tab is in the background, and on phones where
   `new Notification` is not allowed), and a tap on the notification brings the page to that alert. */
"use strict";
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));
self.addEventListener("notificationclick", (e) => {
  e.notification.close();
  const hash = (e.notification.data && e.notification.data.hash) || "";
  e.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((open) => {
    const page = open.find((c) => new URL(c.url).pathname === "/web/");
    if (page) { page.postMessage({ open: hash }); return page.focus(); }
    return self.clients.openWindow("/web/" + hash);
  }));
});
