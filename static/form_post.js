// Submits the response_mode=form_post form as soon as the page is parsed; the visible button
// remains for browsers without scripts.
"use strict";
(function () {
  var form = document.getElementById("form-post");
  if (form) {
    form.submit();
  }
})();
