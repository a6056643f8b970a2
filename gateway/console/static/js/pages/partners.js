// Being written: this page comes in a later commit.
import { h } from "../dom.js";

export default {
  id: "partners",
  title: "Partners",
  scopes: ["webhooks:read"],
  render() {
    return h("h1", {}, "Partners");
  },
};
