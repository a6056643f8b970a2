// Being written: this page comes in a later commit.
import { h } from "../dom.js";

export default {
  id: "engage",
  title: "Engage",
  scopes: ["messages:read"],
  render() {
    return h("h1", {}, "Engage");
  },
};
